// The hostile co-tenant suite against the installed Debian package with the
// file capabilities postinst gives the helpers (see suite.ts and support.ts).
import { coTenantSuite } from './suite.ts';

coTenantSuite('file-caps');
