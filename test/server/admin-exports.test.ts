// src/server/index.ts exports the admin plane next to the data plane, so an embedder can
// mount KeyAdmin and a quorum gate without reaching into module files.
import t from 'tap';
import * as server from '../../src/server/index.js';
import { adminExtraService } from '../../src/server/admin-service.js';
import { StoreQuorumGate } from '../../src/server/quorum-gate.js';

t.test('the admin service, its proto and the quorum gate are exported', async (t) => {
  t.equal(server.adminExtraService, adminExtraService, 'the same function, not a copy');
  t.equal(server.StoreQuorumGate, StoreQuorumGate);
  t.equal(server.ADMIN_SERVICE_NAME, 'hyok.admin.v1.KeyAdmin');
  t.type(server.createAdminService, 'function');
  t.type(server.adminKeyMessage, 'function');
  t.ok(Object.keys(server.adminServiceDefinition()).includes('EnablePurgeProtection'));
  t.ok(server.QUORUM_OPERATIONS.includes('InitSecurityDomain'));
  t.equal(await server.openGate.check('PurgeKey', 'k', 'id', { params: {}, context: {} }), 'proceed');
  t.equal(server.isQuorumOperation('PurgeKey'), true);
  t.equal(server.isQuorumOperation('purge'), false);
});
