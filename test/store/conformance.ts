// The MetadataStore conformance suite. Every implementation runs it (see
// sqlite-conformance.test.ts), so a shared-database store later must behave the same.
// The factory gets a clock so the suite can move time (retention, purge protection).

import type { Test } from 'tap';
import { StoreCodes } from '../../src/store/errors.js';
import type { MetadataStore, NewKey } from '../../src/store/types.js';

export interface StoreFactoryOptions {
  clock: () => number;
}
export type StoreFactory = (opts: StoreFactoryOptions) => Promise<MetadataStore> | MetadataStore;

export const DAY = 86_400_000;
export const T0 = Date.UTC(2026, 0, 1);

/** A new AES key record for the store tests (its first version's CKA_ID and label given). */
export function aesKey(name: string, ckaId: string, extra: Partial<NewKey> = {}): NewKey {
  return {
    name,
    kind: 'aes-256',
    operations: ['wrapKey', 'unwrapKey'],
    origin: 'generated',
    retentionDays: 7,
    firstVersion: { ckaId, hsmLabel: `hyokd:${name}:1` },
    ...extra,
  };
}

export function runStoreConformance(t: Test, factory: StoreFactory): void {
  const setup = async (tt: Test): Promise<{ store: MetadataStore; clock: { now: number } }> => {
    const clock = { now: T0 };
    const store = await factory({ clock: () => clock.now });
    tt.teardown(() => store.close());
    return { store, clock };
  };

  t.test('createKey and getKey round-trip every field', async (t) => {
    const { store } = await setup(t);
    const spki = Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex');
    const created = await store.createKey({
      name: 'sign.ec_1',
      kind: 'ec-p256',
      operations: ['sign', 'verify'],
      origin: 'imported',
      retentionDays: 90,
      purgeProtection: true,
      tags: { team: 'payments', env: 'prod' },
      rotation: { rotationPeriodDays: 30, expiresAt: T0 + 365 * DAY, notifyBeforeDays: 5 },
      state: 'disabled',
      firstVersion: { ckaId: 'a1b2', hsmLabel: 'lbl', publicKeySpki: spki },
    });
    t.same(created, {
      name: 'sign.ec_1',
      kind: 'ec-p256',
      operations: ['sign', 'verify'],
      state: 'disabled',
      createdAt: T0,
      updatedAt: T0,
      tags: { team: 'payments', env: 'prod' },
      retentionDays: 90,
      purgeProtection: true,
      deletedAt: null,
      scheduledPurgeAt: null,
      rotation: { rotationPeriodDays: 30, expiresAt: T0 + 365 * DAY, notifyBeforeDays: 5 },
      primaryVersion: 1,
      origin: 'imported',
    });
    t.same(await store.getKey('sign.ec_1'), created);
    const v1 = await store.getVersion('sign.ec_1', 1);
    t.equal(v1?.ckaId, 'a1b2');
    t.equal(v1?.state, 'enabled');
    t.ok(v1?.publicKeySpki?.equals(spki), 'public key stored as given');
    t.equal(await store.getKey('nope'), null);
    t.equal(await store.getVersion('sign.ec_1', 2), null);
  });

  t.test('a key without a first version has no primary version', async (t) => {
    const { store } = await setup(t);
    const k = await store.createKey({ ...aesKey('bare', 'aa'), firstVersion: undefined });
    t.equal(k.primaryVersion, null);
    t.equal(k.state, 'enabled');
    t.same(k.tags, {});
    t.same(k.rotation, {});
    t.same(await store.listVersions('bare'), []);
  });

  t.test('bad input is refused', async (t) => {
    const { store } = await setup(t);
    const bad: Array<[string, Partial<NewKey>]> = [
      ['name starting with a dot', { name: '.hidden' }],
      ['name with a slash', { name: 'a/b' }],
      ['empty name', { name: '' }],
      ['name of 129 characters', { name: 'a'.repeat(129) }],
      ['retention 6 days', { retentionDays: 6 }],
      ['retention 91 days', { retentionDays: 91 }],
      ['retention not an integer', { retentionDays: 7.5 }],
      ['unknown kind', { kind: 'aes-128' as never }],
      ['unknown origin', { origin: 'found' as never }],
      ['no operations', { operations: [] }],
      ['unknown operation', { operations: ['fly' as never] }],
      ['repeated operation', { operations: ['sign', 'sign'] }],
      ['tag value not a string', { tags: { a: 1 as never } }],
      ['rotation period zero', { rotation: { rotationPeriodDays: 0 } }],
      ['unknown rotation field', { rotation: { every: 3 } as never }],
      ['upper-case CKA_ID', { firstVersion: { ckaId: 'AB', hsmLabel: 'x' } }],
      ['odd-length CKA_ID', { firstVersion: { ckaId: 'abc', hsmLabel: 'x' } }],
      ['empty label', { firstVersion: { ckaId: 'ab', hsmLabel: '' } }],
      ['soft-deleted at birth', { state: 'soft-deleted' as never }],
    ];
    for (const [what, patch] of bad) {
      await t.rejects(
        store.createKey({ ...aesKey('k', 'ab'), ...patch }),
        { code: StoreCodes.INVALID_ARGUMENT },
        what,
      );
    }
    t.same(await store.listKeys(), [], 'nothing was written');
    t.ok(await store.createKey(aesKey('a'.repeat(128), 'ab')), 'a 128-character name is fine');
  });

  t.test('duplicate names and CKA_IDs are refused', async (t) => {
    const { store } = await setup(t);
    await store.createKey(aesKey('k1', '01'));
    await t.rejects(store.createKey(aesKey('k1', '02')), { code: StoreCodes.ALREADY_EXISTS });
    await t.rejects(store.createKey(aesKey('k2', '01')), { code: StoreCodes.ALREADY_EXISTS });
    await t.rejects(store.addVersion('k1', { ckaId: '01', hsmLabel: 'x' }), {
      code: StoreCodes.ALREADY_EXISTS,
    });
    t.equal(await store.getKey('k2'), null, 'the failed create left no key behind');
    await store.softDelete('k1');
    await t.rejects(
      store.createKey(aesKey('k1', '03')),
      { code: StoreCodes.ALREADY_EXISTS },
      'deleted names stay taken',
    );
  });

  t.test('a failing step rolls the whole change back', async (t) => {
    const { store, clock } = await setup(t);
    await store.createKey(aesKey('k1', '01'));
    clock.now += 1000;
    // addVersion updates the key row (primary, updated_at) before inserting the version;
    // the duplicate CKA_ID fails the insert, and the key update must vanish with it.
    await t.rejects(store.addVersion('k1', { ckaId: '01', hsmLabel: 'x' }), {
      code: StoreCodes.ALREADY_EXISTS,
    });
    const k = await store.getKey('k1');
    t.equal(k?.primaryVersion, 1);
    t.equal(k?.updatedAt, T0);
    t.equal((await store.listVersions('k1')).length, 1);
    // createKey with a bad first version: no key row either.
    await t.rejects(store.createKey(aesKey('k2', '01')), { code: StoreCodes.ALREADY_EXISTS });
    t.equal(await store.getKey('k2'), null);
    // an intent to clear that does not exist fails the commit it rides on.
    await t.rejects(
      store.addVersion('k1', { ckaId: '02', hsmLabel: 'x' }, { completeIntent: 'no-such-intent' }),
      { code: StoreCodes.NOT_FOUND },
    );
    t.equal(await store.getVersionByCkaId('02'), null, 'version not added');
    t.equal((await store.getKey('k1'))?.primaryVersion, 1);
  });

  t.test('listKeys filters by state and name prefix, sorted by name', async (t) => {
    const { store } = await setup(t);
    await store.createKey(aesKey('pay_b', '01'));
    await store.createKey(aesKey('pay-a', '02'));
    await store.createKey(aesKey('payXc', '03'));
    await store.createKey(aesKey('other', '04', { state: 'disabled' }));
    await store.softDelete('payXc');
    const names = async (f?: Parameters<MetadataStore['listKeys']>[0]): Promise<string[]> =>
      (await store.listKeys(f)).map((k) => k.name);
    t.same(await names(), ['other', 'pay-a', 'payXc', 'pay_b']);
    t.same(await names({ namePrefix: 'pay' }), ['pay-a', 'payXc', 'pay_b']);
    t.same(await names({ namePrefix: 'pay_' }), ['pay_b'], "'_' is not a wildcard");
    t.same(await names({ state: 'enabled' }), ['pay-a', 'pay_b']);
    t.same(await names({ state: 'disabled' }), ['other']);
    t.same(await names({ state: 'soft-deleted', namePrefix: 'pay' }), ['payXc']);
    t.same(await names({ namePrefix: 'zzz' }), []);
  });

  t.test('versions: numbering, primary, states', async (t) => {
    const { store, clock } = await setup(t);
    await store.createKey(aesKey('k', '01'));
    clock.now += 10;
    const v2 = await store.addVersion('k', { ckaId: '02', hsmLabel: 'hyokd:k:2' });
    t.equal(v2.version, 2);
    t.equal(v2.createdAt, T0 + 10);
    t.equal(v2.publicKeySpki, null);
    t.equal((await store.getKey('k'))?.primaryVersion, 2);
    const v3 = await store.addVersion('k', { ckaId: '03', hsmLabel: 'l3' }, { makePrimary: false });
    t.equal(v3.version, 3);
    t.equal((await store.getKey('k'))?.primaryVersion, 2, 'makePrimary:false keeps the primary');
    t.same(
      (await store.listVersions('k')).map((v) => v.version),
      [1, 2, 3],
    );
    t.equal((await store.getVersionByCkaId('03'))?.version, 3);
    t.equal(await store.getVersionByCkaId('ff'), null);
    await t.rejects(store.getVersionByCkaId('XYZ'), { code: StoreCodes.INVALID_ARGUMENT });

    await t.rejects(
      store.setVersionState('k', 2, 'disabled'),
      { code: StoreCodes.FAILED_PRECONDITION },
      'primary',
    );
    const d1 = await store.setVersionState('k', 1, 'disabled');
    t.equal(d1.state, 'disabled');
    await t.rejects(
      store.setPrimaryVersion('k', 1),
      { code: StoreCodes.FAILED_PRECONDITION },
      'disabled cannot be primary',
    );
    await t.rejects(store.setPrimaryVersion('k', 9), { code: StoreCodes.NOT_FOUND });
    await t.rejects(store.setVersionState('k', 9, 'enabled'), { code: StoreCodes.NOT_FOUND });
    t.equal((await store.setPrimaryVersion('k', 3)).primaryVersion, 3);
    t.equal((await store.setVersionState('k', 1, 'enabled')).state, 'enabled');
    await t.rejects(store.addVersion('nope', { ckaId: '09', hsmLabel: 'x' }), { code: StoreCodes.NOT_FOUND });
    await t.rejects(
      store.addVersion('k', { ckaId: '0a', hsmLabel: 'x', state: 'disabled' }),
      { code: StoreCodes.INVALID_ARGUMENT },
      'a disabled version cannot become primary',
    );
  });

  t.test('key state, tags, rotation policy', async (t) => {
    const { store, clock } = await setup(t);
    await store.createKey(aesKey('k', '01'));
    clock.now += 5;
    const d = await store.setKeyState('k', 'disabled');
    t.equal(d.state, 'disabled');
    t.equal(d.updatedAt, T0 + 5);
    t.equal((await store.setKeyState('k', 'enabled')).state, 'enabled');
    await t.rejects(store.setKeyState('k', 'soft-deleted' as never), { code: StoreCodes.INVALID_ARGUMENT });
    t.same((await store.setTags('k', { a: 'b' })).tags, { a: 'b' });
    t.same((await store.setTags('k', {})).tags, {}, 'tags are replaced, not merged');
    await t.rejects(store.setTags('k', [] as never), { code: StoreCodes.INVALID_ARGUMENT });
    t.same((await store.setRotationPolicy('k', { rotationPeriodDays: 90 })).rotation, {
      rotationPeriodDays: 90,
    });
    t.same((await store.setRotationPolicy('k', {})).rotation, {});
    await t.rejects(store.setRotationPolicy('k', { notifyBeforeDays: -1 }), {
      code: StoreCodes.INVALID_ARGUMENT,
    });
    await t.rejects(store.setKeyState('nope', 'enabled'), { code: StoreCodes.NOT_FOUND });
    await t.rejects(store.setTags('nope', {}), { code: StoreCodes.NOT_FOUND });
  });

  t.test('purge protection is sticky', async (t) => {
    const { store } = await setup(t);
    await store.createKey(aesKey('k', '01'));
    t.equal((await store.setPurgeProtection('k', false)).purgeProtection, false, 'off to off is a no-op');
    t.equal((await store.setPurgeProtection('k', true)).purgeProtection, true);
    await t.rejects(store.setPurgeProtection('k', false), { code: StoreCodes.FAILED_PRECONDITION });
    t.equal((await store.getKey('k'))?.purgeProtection, true);
    t.equal((await store.setPurgeProtection('k', true)).purgeProtection, true, 'on to on is fine');
    await t.rejects(store.setPurgeProtection('nope', true), { code: StoreCodes.NOT_FOUND });
  });

  t.test('soft delete, recover and purge', async (t) => {
    const { store, clock } = await setup(t);
    await store.createKey(aesKey('k', '01', { state: 'disabled', retentionDays: 10 }));
    await store.addVersion('k', { ckaId: '02', hsmLabel: 'x' });
    clock.now = T0 + 1000;
    const del = await store.softDelete('k');
    t.equal(del.state, 'soft-deleted');
    t.equal(del.deletedAt, T0 + 1000);
    t.equal(del.scheduledPurgeAt, T0 + 1000 + 10 * DAY);
    await t.rejects(store.softDelete('k'), { code: StoreCodes.FAILED_PRECONDITION }, 'twice');
    await t.rejects(store.setKeyState('k', 'enabled'), { code: StoreCodes.FAILED_PRECONDITION });
    await t.rejects(store.addVersion('k', { ckaId: '03', hsmLabel: 'x' }), {
      code: StoreCodes.FAILED_PRECONDITION,
    });
    await t.rejects(store.setTags('k', {}), { code: StoreCodes.FAILED_PRECONDITION });

    const rec = await store.recover('k');
    t.equal(rec.state, 'disabled', 'recover restores the state before deletion');
    t.equal(rec.deletedAt, null);
    t.equal(rec.scheduledPurgeAt, null);
    await t.rejects(store.recover('k'), { code: StoreCodes.FAILED_PRECONDITION }, 'recover a live key');
    await t.rejects(store.removeKey('k'), { code: StoreCodes.FAILED_PRECONDITION }, 'purge a live key');

    await store.softDelete('k');
    t.same(await store.listDueForPurge(T0 + 1000 + 10 * DAY - 1), []);
    t.same(
      (await store.listDueForPurge(T0 + 1000 + 10 * DAY)).map((k) => k.name),
      ['k'],
    );
    await store.removeKey('k');
    t.equal(await store.getKey('k'), null);
    t.same(await store.listVersions('k'), [], 'versions go with the key');
    t.equal(await store.getVersionByCkaId('02'), null);
    await t.rejects(store.removeKey('k'), { code: StoreCodes.NOT_FOUND });
    t.ok(await store.createKey(aesKey('k', '01')), 'name and CKA_ID are free again after purge');
  });

  t.test('purge protection holds a deleted key until its retention ends', async (t) => {
    const { store, clock } = await setup(t);
    await store.createKey(aesKey('k', '01', { purgeProtection: true, retentionDays: 7 }));
    const del = await store.softDelete('k');
    clock.now = (del.scheduledPurgeAt ?? 0) - 1;
    await t.rejects(store.removeKey('k'), { code: StoreCodes.FAILED_PRECONDITION });
    t.ok(await store.getKey('k'));
    clock.now += 1;
    await store.removeKey('k');
    t.equal(await store.getKey('k'), null);
  });

  t.test('intents: begin, list, complete, commit-with-clear', async (t) => {
    const { store, clock } = await setup(t);
    const a = await store.beginIntent('create', 'k', { ckaId: '01', kind: 'aes-256' });
    clock.now += 1;
    const b = await store.beginIntent('rotate', null, { n: 2 });
    t.not(a, b);
    const open = await store.listOpenIntents();
    t.same(
      open.map((i) => [i.id, i.kind, i.keyName, i.payload, i.createdAt]),
      [
        [a, 'create', 'k', { ckaId: '01', kind: 'aes-256' }, T0],
        [b, 'rotate', null, { n: 2 }, T0 + 1],
      ],
    );
    await store.createKey(aesKey('k', '01'), { completeIntent: a });
    t.same(
      (await store.listOpenIntents()).map((i) => i.id),
      [b],
      'the commit cleared its intent',
    );
    await store.completeIntent(b);
    t.same(await store.listOpenIntents(), []);
    await t.rejects(store.completeIntent(b), { code: StoreCodes.NOT_FOUND });
    await t.rejects(store.beginIntent('', 'k', {}), { code: StoreCodes.INVALID_ARGUMENT });
    await t.rejects(store.beginIntent('x', 'bad/name', {}), { code: StoreCodes.INVALID_ARGUMENT });
    // purge commits with its intent too
    await store.softDelete('k');
    const p = await store.beginIntent('purge', 'k', {});
    await store.removeKey('k', { completeIntent: p });
    t.same(await store.listOpenIntents(), []);
  });

  t.test('security domain is bound once', async (t) => {
    const { store } = await setup(t);
    t.equal(await store.getDomain(), null);
    await t.rejects(store.setDomainMetadata({ a: 1 }), { code: StoreCodes.NOT_FOUND });
    const d = await store.initDomain('dom-1', { quorum: 3 });
    t.same(d, { domainId: 'dom-1', createdAt: T0, metadata: { quorum: 3 } });
    await t.rejects(store.initDomain('dom-2'), { code: StoreCodes.ALREADY_EXISTS });
    t.same((await store.setDomainMetadata({ quorum: 2 })).metadata, { quorum: 2 });
    t.equal((await store.getDomain())?.domainId, 'dom-1');
    await t.rejects(store.initDomain(''), { code: StoreCodes.INVALID_ARGUMENT });
  });

  t.test('policy documents keep revisions', async (t) => {
    const { store, clock } = await setup(t);
    t.equal(await store.getCurrentPolicyDocument(), null);
    const r1 = await store.savePolicyDocument({ format: 'yaml', text: 'version: 1\n', createdBy: 'op-a' });
    clock.now += 1;
    const r2 = await store.savePolicyDocument({ format: 'json', text: '{"version":1}', createdBy: 'op-b' });
    t.ok(r2.revision > r1.revision);
    t.same(await store.getCurrentPolicyDocument(), {
      revision: r2.revision,
      format: 'json',
      text: '{"version":1}',
      createdAt: T0 + 1,
      createdBy: 'op-b',
    });
    await t.rejects(store.savePolicyDocument({ format: 'xml' as never, text: '', createdBy: 'x' }), {
      code: StoreCodes.INVALID_ARGUMENT,
    });
  });

  t.test('pending requests: CRUD and compare-and-set', async (t) => {
    const { store, clock } = await setup(t);
    const r = await store.createPendingRequest({
      op: 'purge',
      keyName: 'k',
      requester: 'spiffe://x/op',
      expiresAt: T0 + DAY,
      payload: { why: 'cleanup' },
    });
    t.match(r, {
      op: 'purge',
      keyName: 'k',
      state: 'pending',
      approvals: [],
      createdAt: T0,
      payload: { why: 'cleanup' },
    });
    t.same(await store.getPendingRequest(r.id), r);
    const other = await store.createPendingRequest({ op: 'restore', requester: 'a', expiresAt: T0 + 5 });
    t.equal(other.keyName, null);
    t.equal(other.payload, null);
    clock.now += 1;
    const appr = await store.updatePendingRequest(r.id, 'pending', {
      approvals: [{ approver: 'b', at: T0 + 1 }],
    });
    t.same(appr.approvals, [{ approver: 'b', at: T0 + 1 }]);
    t.equal(appr.state, 'pending');
    const done = await store.updatePendingRequest(r.id, 'pending', { state: 'approved' });
    t.equal(done.state, 'approved');
    t.same(done.approvals, [{ approver: 'b', at: T0 + 1 }], 'approvals kept when not patched');
    await t.rejects(store.updatePendingRequest(r.id, 'pending', { state: 'rejected' }), {
      code: StoreCodes.CONFLICT,
    });
    await t.rejects(store.updatePendingRequest('nope', 'pending', {}), { code: StoreCodes.NOT_FOUND });
    await t.rejects(store.updatePendingRequest(r.id, 'approved', { state: 'bogus' as never }), {
      code: StoreCodes.INVALID_ARGUMENT,
    });
    await t.rejects(
      store.updatePendingRequest(r.id, 'approved', { approvals: [{ approver: 'x' }] as never }),
      {
        code: StoreCodes.INVALID_ARGUMENT,
      },
    );
    t.same(
      (await store.listPendingRequests({ state: 'pending' })).map((x) => x.id),
      [other.id],
    );
    t.same(
      (await store.listPendingRequests({ keyName: 'k' })).map((x) => x.id),
      [r.id],
    );
    t.equal((await store.listPendingRequests()).length, 2);
    await store.deletePendingRequest(other.id);
    t.equal(await store.getPendingRequest(other.id), null);
    await t.rejects(store.deletePendingRequest(other.id), { code: StoreCodes.NOT_FOUND });
    await t.rejects(store.createPendingRequest({ op: 'x', requester: 'a', expiresAt: T0 }), {
      code: StoreCodes.INVALID_ARGUMENT,
    });
    await t.rejects(store.createPendingRequest({ op: '', requester: 'a', expiresAt: T0 + DAY }), {
      code: StoreCodes.INVALID_ARGUMENT,
    });
  });

  t.test('a closed store refuses work', async (t) => {
    const { store } = await setup(t);
    await store.close();
    await t.rejects(store.getKey('k'), { code: StoreCodes.CLOSED });
    await t.rejects(store.createKey(aesKey('k', '01')), { code: StoreCodes.CLOSED });
  });
}
