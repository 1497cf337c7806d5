// The hostile co-tenant suite against the installed Debian package as
// postinst installs it where setcap cannot work: setuid root (see suite.ts
// and support.ts).
import { coTenantSuite } from './suite.ts';

coTenantSuite('setuid');
