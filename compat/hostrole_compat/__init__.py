"""hostrole's compatibility harness: real AWS clients against the daemon.

Modules: config (paths, clients, scenarios, the clients' documented limits),
daemon (the daemon, the network namespace, moto, the endpoint's own answer),
fakes (the v1-forcing proxy, the STS look-alike), clients (the client
sessions), report (judging a result, writing the matrix), scenarios (one
function per scenario, in RUNNERS), cli (compat/matrix's command line)."""
