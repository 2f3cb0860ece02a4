// The security domain (hyok.admin.v1.KeyAdmin Init/Join/GetSecurityDomain):
// `hyokd domain init | join | show`. A domain decides which backup blobs a daemon can
// restore: `keys backup` seals blobs under the domain's backup key, and only daemons
// bound to the same domain (whose HSM holds that key) can restore them.

import type { Command } from 'commander';
import { UsageError, type CliIo } from './cli-io.js';
import { print, runAction, subcommand } from './command-kit.js';
import { addAdminOptions, openAdmin, type AdminFlags } from './admin-commands.js';
import { timestampToIso, type Timestamp } from './format.js';
import { callUnary } from './grpc-client.js';

interface Domain {
  domainId: string;
  backupKeyId: string;
  boundTime: Timestamp | null;
}

const DOMAIN_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const BACKUP_KEY_ID = /^(?:[0-9a-f]{2}){1,64}$/;

async function domainCall<R>(o: AdminFlags, io: CliIo, method: string, body: object): Promise<R> {
  const conn = await openAdmin(o, io);
  try {
    return await callUnary<R>(conn.client, method, { ...conn.base, ...body }, { timeoutMs: conn.timeoutMs });
  } finally {
    conn.close();
  }
}

function domainLines(d: Domain): string[] {
  return [
    `security domain: ${d.domainId}`,
    `backup key id:   ${d.backupKeyId || '-'}`,
    `bound:           ${timestampToIso(d.boundTime) ?? '-'}`,
  ];
}

function domainJson(d: Domain): Record<string, unknown> {
  return { domainId: d.domainId, backupKeyId: d.backupKeyId, boundTime: timestampToIso(d.boundTime) };
}

export function registerDomainCommands(program: Command, io: CliIo): void {
  const domain = subcommand(program, 'domain', io).description(
    'security domain for key backup and restore: init, join, show',
  );

  // init
  const init = subcommand(domain, 'init', io).description(
    'bind the server to a new security domain (creates its backup key in the HSM; a bound server is left as it is)',
  );
  addAdminOptions(init);
  runAction<AdminFlags>(init, io, async (_a, o) => {
    const res = await domainCall<{ domain: Domain; created: boolean }>(o, io, 'InitSecurityDomain', {});
    const head = res.created ? 'created a new security domain' : 'already bound to a security domain';
    print(
      io,
      o.json,
      [
        head,
        ...domainLines(res.domain),
        `join another daemon whose HSM holds this backup key with:`,
        `  hyokd domain join --domain-id ${res.domain.domainId} --backup-key-id ${res.domain.backupKeyId}`,
      ],
      { created: res.created, domain: domainJson(res.domain) },
    );
  });

  // join
  const join = subcommand(domain, 'join', io)
    .description(
      "bind the server to an existing domain whose backup key is already on the server's HSM (cluster replica or vendor clone)",
    )
    .requiredOption('--domain-id <id>', 'the domain id `domain init` or `domain show` printed')
    .requiredOption('--backup-key-id <hex>', "the backup key's CKA_ID, lowercase hex, as printed there");
  addAdminOptions(join);
  runAction<AdminFlags & { domainId: string; backupKeyId: string }>(join, io, async (_a, o) => {
    if (!DOMAIN_ID.test(o.domainId)) {
      throw new UsageError('--domain-id: 1-128 characters of A-Z a-z 0-9 . _ : -');
    }
    if (!BACKUP_KEY_ID.test(o.backupKeyId)) {
      throw new UsageError('--backup-key-id: 1-64 bytes of lowercase hex (an even number of 0-9 a-f)');
    }
    const res = await domainCall<{ domain: Domain }>(o, io, 'JoinSecurityDomain', {
      domainId: o.domainId,
      backupKeyId: o.backupKeyId,
    });
    print(io, o.json, ['joined the security domain', ...domainLines(res.domain)], {
      domain: domainJson(res.domain),
    });
  });

  // show
  const show = subcommand(domain, 'show', io).description('the security domain the server is bound to');
  addAdminOptions(show);
  runAction<AdminFlags>(show, io, async (_a, o) => {
    const res = await domainCall<{ domain: Domain | null }>(o, io, 'GetSecurityDomain', {});
    if (!res.domain) {
      print(io, o.json, 'no security domain is bound (run `hyokd domain init` or `hyokd domain join`)', {
        domain: null,
      });
      return;
    }
    print(io, o.json, domainLines(res.domain), { domain: domainJson(res.domain) });
  });
}
