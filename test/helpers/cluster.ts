import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { after, before } from 'node:test';
import { ControlPlane, type ControlPlaneOptions } from '../../localcluster/control-plane.ts';
import { KubeClient } from '../../kube/client.ts';

export interface TestCluster {
  cp: ControlPlane;
  /** Admin client. */
  client: KubeClient;
}

/**
 * Starts a control plane for the calling test file (before) and stops it after, keeping the data
 * directory only when a test failed (its logs help). Returns a holder filled in by `before`.
 */
export function useControlPlane(
  opts: Omit<ControlPlaneOptions, 'dir'> & {
    /** Runs once the control plane is up (node:test does not order several root-level before hooks). */
    setup?: (c: TestCluster) => Promise<void>;
    /** Runs before the control plane stops. */
    teardown?: (c: TestCluster) => Promise<void>;
  } = {},
): TestCluster {
  const holder = {} as TestCluster;
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'modelcache-cp-'));
    holder.cp = await ControlPlane.start({ ...opts, dir });
    holder.client = KubeClient.fromKubeconfig({ kubeconfig: holder.cp.kubeconfig });
    await opts.setup?.(holder);
  });
  after(async () => {
    await opts.teardown?.(holder).catch(() => undefined);
    await holder.client?.close();
    await holder.cp?.stop();
    if (dir && process.exitCode !== 1) await rm(dir, { recursive: true, force: true });
  });
  return holder;
}

/** A name unique to this test run: tests own their names and can run side by side. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(3).toString('hex')}`;
}
