import { isAbsolute, posix, resolve } from 'node:path';
import { defineFlags, kubeconfigFlag, listenAddress, logLevelFlag, usage } from '../ops/flag-spec.ts';
import { PEER_AUDIENCE } from './peers/protocol.ts';

/** The daemon's flags, declared once: its parser, range checks and `--help` are made from this table. */
export const daemonFlags = defineFlags({
  command: 'daemon',
  flags: {
    kubeconfig: kubeconfigFlag,
    'node-name': {
      kind: 'string',
      arg: 'N',
      env: 'NODE_NAME',
      required: 'the daemon serves one node; $NODE_NAME comes from the downward API (spec.nodeName)',
      help: 'this node',
      note: 'from the downward API',
    },
    root: {
      kind: 'string',
      arg: 'DIR',
      required: "the directory that holds this node's cached models",
      help: "cache directory on the node (the group's storagePath, mounted); models in DIR/models/<key>",
      parse: (text) => resolve(text),
    },
    'host-root': {
      kind: 'string',
      arg: 'PATH',
      help:
        "the host directory --root is mounted from (the DaemonSet's hostPath): models of groups whose storage path " +
        'is another one are reported (StoragePathMismatch), not cached',
      parse: hostRootFlag,
    },
    listen: {
      kind: 'string',
      arg: 'ADDR',
      default: '127.0.0.1:8081',
      help: '/metrics, /healthz, /readyz, and the artifact server unless --artifact-socket',
      parse: listenAddress,
    },
    'artifact-socket': {
      kind: 'string',
      arg: 'PATH',
      help: 'serve cached models on this Unix socket only (consumers mount its directory), not on --listen',
      parse: (text) => (text ? resolve(text) : undefined),
    },
    'max-concurrent': { kind: 'whole', default: 2, min: 1, max: 64, help: 'downloads at once' },
    'safety-margin': { kind: 'quantity', default: '1Gi', min: 0, help: 'free space always left on the disk' },
    'stall-timeout-seconds': {
      kind: 'duration',
      unit: 's',
      default: 30,
      min: 1,
      max: 86_400,
      help: 'abort and retry a download that received nothing this long',
    },
    'allow-file-root': {
      kind: 'list',
      arg: 'DIR',
      help: 'let file:// sources read host paths under DIR',
      defaultText: 'none',
      note: 'repeatable',
    },
    namespace: {
      kind: 'string',
      arg: 'NS',
      env: 'POD_NAMESPACE',
      default: 'modelcache-system',
      help: "where node groups' credential Secrets live",
      defaultText: '$POD_NAMESPACE or modelcache-system',
    },
    'part-size': {
      kind: 'quantity',
      default: '16Mi',
      min: 2 ** 20,
      max: 2 ** 30,
      help: 'objects of twice this size are fetched as parallel ranged GETs of this size',
    },
    'parallel-parts': {
      kind: 'whole',
      default: 4,
      min: 1,
      max: 64,
      help: 'ranged GETs at once per object',
      note: '1 = one stream',
    },
    'parallel-files': {
      kind: 'whole',
      default: 4,
      min: 1,
      max: 64,
      help: 'objects at once when a source lists many',
    },
    'progress-interval-ms': {
      kind: 'duration',
      unit: 'ms',
      default: 2000,
      min: 100,
      max: 3_600_000,
      help: 'at most one progress write per this interval',
    },
    'orphan-grace-seconds': {
      kind: 'duration',
      unit: 's',
      default: 600,
      min: 0,
      max: 604_800,
      help: "while this node's LocalModelNode is absent, keep cached files this long",
    },
    'peer-listen': {
      kind: 'string',
      arg: 'ADDR',
      help: 'serve verified pieces of cached models to peer nodes here, and fetch from peers (peer-to-peer)',
      defaultText: 'off',
      parse: listenAddress,
    },
    'peer-advertise': {
      kind: 'string',
      arg: 'HOST:PORT',
      help: "the address peers reach --peer-listen at, published in this node's LocalModelNode status",
      defaultText: "$POD_IP and --peer-listen's port",
      parse: listenAddress,
    },
    'peer-token-file': {
      kind: 'string',
      arg: 'FILE',
      default: '/var/run/secrets/modelcache/peer/token',
      help: `projected service-account token (audience ${PEER_AUDIENCE}) sent to peers; read again for every request`,
    },
    'peer-identity': {
      kind: 'list',
      arg: 'USER',
      help: 'service-account user allowed to fetch pieces (checked by TokenReview)',
      defaultText: 'system:serviceaccount:<--namespace>:modelcache-daemon',
      note: 'repeatable',
    },
    'peer-seeds': {
      kind: 'string',
      arg: 'SCOPE',
      default: 'zone',
      choices: ['zone', 'cluster'],
      help:
        "zone: each zone fetches a model from its source through a seed of its own (the zones' egress is their own); " +
        'cluster: one seed for all zones, the others copy across (the zones share one link to the source)',
    },
    'peer-max-uploads': {
      kind: 'whole',
      default: 8,
      min: 1,
      max: 1024,
      help: 'pieces served to peers at once; more are refused with 429',
    },
    'log-level': logLevelFlag,
  },
});

/** The daemon's `--help`. */
export const daemonUsage = usage(daemonFlags);

/** --host-root: the absolute host path the DaemonSet mounts as --root, normalized. */
function hostRootFlag(text: string): string {
  if (!isAbsolute(text) || text.includes('\0'))
    throw new Error(
      `--host-root ${JSON.stringify(text)}: must be an absolute host path, the hostPath the DaemonSet mounts as --root`,
    );
  return posix.normalize(text);
}
