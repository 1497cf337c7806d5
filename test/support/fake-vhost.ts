// The fake vhost opener that test/support/helper-with-seams.ts installs.
import { openSync } from 'node:fs';
import type { VhostOpener } from '../../lib/vhost.ts';

/** Features a fake vhost fd reports: VIRTIO_NET_F_MRG_RXBUF | VIRTIO_F_VERSION_1, recognisable in assertions. */
export const FAKE_VHOST_FEATURES = (1n << 15n) | (1n << 32n);

/** Opens /dev/null in place of /dev/vhost-net. */
export const FAKE_VHOST: VhostOpener = { open: () => openSync('/dev/null', 'r+'), features: () => FAKE_VHOST_FEATURES };
