// npm run bench: the benchmark suites land with the controller and daemon issues.
console.error('npm run bench: no benchmark suite has landed yet (controller and daemon benchmarks come with those issues).');
process.exit(1);
