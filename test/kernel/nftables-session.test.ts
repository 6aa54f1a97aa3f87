// The long-lived `nft -i` behind partial syncs, against a real kernel in a
// namespace of our own: transactions apply in order, a failing one applies
// nothing and names its statement, the session outlives failures and the
// death of its nft.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Topology, runPrefix } from '../../src/lab/netns.js';
import { NftError } from '../../src/dataplane/nftables/apply.js';
import { NftSession } from '../../src/dataplane/nftables/session.js';

test('nft session: ordered transactions, atomic failures with the failing statement, restart after nft dies', async () => {
  const topo = new Topology(runPrefix('ns'));
  let session: NftSession | undefined;
  try {
    const ns = await topo.netns('node');
    session = new NftSession(['ip', 'netns', 'exec', ns.name, 'nft'], 10_000);
    await session.run('add table ip kproxy\nadd map ip kproxy m { typeof ip daddr : ip daddr; }\nadd set ip kproxy s { typeof ip daddr; }\n');
    // Many at once, queued: each settles with its own outcome.
    const runs = Array.from({ length: 20 }, (_, i) => session!.run(`add element ip kproxy m { 10.0.0.${i} : 10.1.0.${i} }\nadd element ip kproxy s { 10.0.0.${i} }`));
    await Promise.all(runs);
    const list = async (what: string) => (await ns.exec('nft', ['list', what, 'ip', 'kproxy', what === 'map' ? 'm' : 's'])).stdout;
    assert.equal((await list('map')).match(/10\.0\.0\.\d+ : 10\.1\.0\.\d+/g)?.length, 20);

    // A transaction whose third statement fails: the first two are not applied either.
    const bad = 'delete element ip kproxy s { 10.0.0.1 }\nadd element ip kproxy m { 10.0.0.99 : 10.1.0.99 }\nadd element ip kproxy nosuch { 10.0.0.1 }\n';
    await assert.rejects(session.run(bad), (e: unknown) => {
      assert.ok(e instanceof NftError, String(e));
      assert.match(e.message, /No such file or directory/);
      assert.deepEqual(e.lines, ['3: add element ip kproxy nosuch { 10.0.0.1 }']);
      return true;
    });
    assert.match(await list('set'), /10\.0\.0\.1[,\s]/);
    assert.doesNotMatch(await list('map'), /10\.0\.0\.99/);
    // A kernel-side refusal (element already there, with create): same.
    await assert.rejects(session.run('add element ip kproxy s { 10.0.0.200 }\ncreate element ip kproxy s { 10.0.0.2 }'), NftError);
    assert.doesNotMatch(await list('set'), /10\.0\.0\.200/);

    // The session still works after failures, and after its nft is killed.
    await session.run('delete element ip kproxy s { 10.0.0.3 }');
    assert.doesNotMatch(await list('set'), /10\.0\.0\.3[,\s]/);
    // `ip netns exec` execs nft in its own process: this pid is nft's.
    const pid = session.pid;
    assert.ok(pid, 'no nft -i process to kill');
    process.kill(pid, 'SIGKILL');
    await new Promise((res) => setTimeout(res, 200));
    await session.run('delete element ip kproxy s { 10.0.0.4 }');
    assert.doesNotMatch(await list('set'), /10\.0\.0\.4[,\s]/);
  } finally {
    session?.close();
    await topo.destroy();
  }
});
