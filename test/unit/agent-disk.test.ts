// The model agent on a real --model-dir, a real V2 server and a real origin: it removes only the folders
// it made, and an absent models.json changes nothing while an explicit [] unloads everything.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { ModelAgent } from '../../agent/agent.ts';
import { ModelServer } from '../../agent/model-server.ts';
import { fileSource } from '../../agent/models-source.ts';
import { specHash } from '../../agent/plan.ts';
import { HttpClient } from '../../download/http-client.ts';
import { createLogger } from '../../ops/logger.ts';
import { eventually } from '../../localcluster/eventually.ts';
import { V2ModelServer } from '../helpers/model-server.ts';
import { Origin } from '../../localcluster/origin.ts';

const spec = (storageUri: string) => ({ storageUri, framework: 'sklearn', memory: '10Mi' });

interface Fixture {
  modelDir: string;
  modelsJson: string;
  v2: V2ModelServer;
  logs: () => Array<Record<string, unknown>>;
  /** Writes models.json wanting these models, each served by the origin. */
  want: (models: string[]) => Promise<void>;
  /** One reconcile pass after the ones already asked for (what the agent's work queue does). */
  kick: () => Promise<unknown>;
  /** Adds model `z` to `models`, waits until it is loaded: everything started before it has finished. */
  barrier: (models: string[], z: string) => Promise<void>;
  /** What is in the model folder (the agent's dot-folders aside). */
  entries: () => Promise<string[]>;
  errors: unknown[];
}

/** A ModelAgent on a temp --model-dir with a real V2 server and origin, cleaned up after the test. */
async function startAgent(t: TestContext): Promise<Fixture> {
  const work = await mkdtemp(join(tmpdir(), 'modelcache-agent-disk-'));
  const modelDir = join(work, 'models');
  await mkdir(modelDir);
  const modelsJson = join(work, 'models.json');
  const origin = await Origin.start();
  const v2 = await V2ModelServer.start(modelDir);
  const http = new HttpClient({ connectTimeoutMs: 5000, responseTimeoutMs: 10_000 });
  const server = new ModelServer(v2.url, 1);
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  const errors: unknown[] = [];
  let chain: Promise<unknown> = Promise.resolve();
  const holder: { agent?: ModelAgent } = {};
  const kick = (): Promise<unknown> =>
    (chain = chain.then(() => holder.agent?.reconcile()).catch((err: unknown) => errors.push(err)));
  const agent = new ModelAgent({
    modelsJson: fileSource(modelsJson).read,
    modelsSource: modelsJson,
    modelDir,
    maxModelBytes: 2 ** 30,
    credentials: {},
    http,
    server,
    log: createLogger('agent', 'info', sink),
    maxConcurrent: 1, // work runs in the order it was started: loading a later model waits for what came before
    onChange: () => void kick(),
    retry: { baseMs: 600_000, maxMs: 600_000 },
  });
  holder.agent = agent;
  t.after(async () => {
    await agent.stop();
    await server.close();
    await http.close();
    await v2.close();
    await origin.close();
    await rm(work, { recursive: true, force: true });
  });
  const want = async (models: string[]): Promise<void> => {
    for (const n of models) origin.set(`/m/${n}.bin`, Buffer.from(`weights of ${n}`));
    await writeFile(
      modelsJson,
      JSON.stringify(models.map((n) => ({ modelName: n, modelSpec: spec(origin.url(`/m/${n}.bin`)) }))),
    );
  };
  return {
    modelDir,
    modelsJson,
    v2,
    errors,
    logs: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>),
    want,
    kick,
    async barrier(models, z) {
      await want([...models, z]);
      await kick();
      await eventually(() => assert.ok(v2.loaded.has(z), `${z} loaded; the agent logged:\n${lines.join('\n')}`), {
        timeoutMs: 20_000,
      });
    },
    entries: async () => (await readdir(modelDir)).filter((n) => !n.startsWith('.')).sort(),
  };
}

test('the agent leaves alone what it did not make in --model-dir (lost+found, foreign folders) and removes its own', async (t) => {
  const { modelDir, modelsJson, v2, logs, want, kick, barrier, entries, errors } = await startAgent(t);
  // What others put in --model-dir: lost+found, a folder of their own, and one named like a wanted model.
  await mkdir(join(modelDir, 'lost+found'));
  await writeFile(join(modelDir, 'lost+found', '#1234'), 'recovered');
  await mkdir(join(modelDir, 'foreign'));
  await writeFile(join(modelDir, 'foreign', 'weights.bin'), 'NOT THE AGENT');
  await mkdir(join(modelDir, 'taken'));
  await writeFile(join(modelDir, 'taken', 'own.txt'), 'MINE');
  await writeFile(join(modelDir, 'notes.txt'), 'a file');
  // A folder an earlier run of the agent made for a model nobody wants any more.
  await mkdir(join(modelDir, 'old'));
  await writeFile(join(modelDir, 'old', `SUCCESS.${specHash(spec('http://gone/old.bin'))}`), '');
  await writeFile(join(modelDir, 'old', 'old.bin'), 'OLD');

  await want(['a', 'taken']);
  await kick();
  await barrier(['a', 'taken'], 'z');
  assert.deepEqual(
    await entries(),
    ['a', 'foreign', 'lost+found', 'notes.txt', 'taken', 'z'],
    'lost+found, the foreign folder and file stay; the old folder the agent made is gone',
  );
  assert.equal(await readFile(join(modelDir, 'a', 'a.bin'), 'utf8'), 'weights of a');
  assert.equal(await readFile(join(modelDir, 'lost+found', '#1234'), 'utf8'), 'recovered');
  assert.equal(await readFile(join(modelDir, 'foreign', 'weights.bin'), 'utf8'), 'NOT THE AGENT');
  assert.deepEqual(await readdir(join(modelDir, 'taken')), ['own.txt'], 'a folder it did not make is not replaced');
  assert.deepEqual([...v2.loaded].sort(), ['a', 'z'], 'and the model named like it is not loaded');
  const refused = logs().find((l) => l.msg === 'model not loaded' && l.model === 'taken');
  assert.equal(refused?.reason, 'FolderNotOwned');
  assert.match(String(refused?.message), /was not made by the model agent/);

  await writeFile(modelsJson, '[]');
  await kick();
  await eventually(async () => assert.deepEqual(await entries(), ['foreign', 'lost+found', 'notes.txt', 'taken']), {
    timeoutMs: 20_000,
  });
  assert.equal(await readFile(join(modelDir, 'taken', 'own.txt'), 'utf8'), 'MINE');
  assert.deepEqual(errors, []);
});

test('models.json absent for a while is "unknown": nothing is unloaded or deleted; an explicit [] unloads everything', async (t) => {
  const { modelsJson, v2, logs, want, kick, barrier, entries, errors } = await startAgent(t);
  await want(['a', 'b']);
  await kick();
  await barrier(['a', 'b'], 'z1');
  assert.deepEqual(await entries(), ['a', 'b', 'z1']);

  // A ConfigMap volume swapping its files, a ConfigMap being recreated: models.json is briefly not there.
  await rm(modelsJson);
  await kick();
  await kick();
  await barrier(['a', 'b', 'z1'], 'z2');
  assert.deepEqual(
    v2.calls.filter((c) => c.verb === 'unload'),
    [],
    'nothing unloaded while models.json was absent',
  );
  assert.deepEqual(v2.callsFor('a'), ['load'], 'a stayed loaded and was never fetched again');
  assert.deepEqual([...v2.loaded].sort(), ['a', 'b', 'z1', 'z2']);
  assert.deepEqual(await entries(), ['a', 'b', 'z1', 'z2']);
  assert.ok(logs().some((l) => l.msg === 'models.json is absent; keeping the models as they are'));

  await writeFile(modelsJson, '[]');
  await kick();
  await eventually(
    async () => {
      assert.deepEqual([...v2.loaded], []);
      assert.deepEqual(await entries(), []);
    },
    { timeoutMs: 20_000 },
  );
  assert.deepEqual(
    v2.calls
      .filter((c) => c.verb === 'unload')
      .map((c) => c.model)
      .sort(),
    ['a', 'b', 'z1', 'z2'],
  );
  assert.deepEqual(errors, []);
});
