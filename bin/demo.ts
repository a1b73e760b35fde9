// npm run demo: lands with the end-to-end issue, once the controller and daemon exist.
console.error('npm run demo: not available yet — it needs the controller and the node daemon. Today you can run `npm run cluster -- start --dir /tmp/mc` for a local control plane.');
process.exit(1);
