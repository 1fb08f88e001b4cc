"""`python -m bench.overhead`: what Modelyard adds in front of an upstream, next to the bare
upstream, a bare uvicorn app and two peers (LiteLLM's proxy, Portkey's Node gateway), all driven
by one load generator.

Owns the benchmark of issue 7 (part 1), with issue 19's second peer and CPU targets. Every
server and the load generator run in processes of their own, so each one's CPU is read from
/proc on its own. The package holds one idea a module:

- `payloads`: the fixed request and answers every server speaks;
- `upstream`: the fast fake upstream (raw asyncio HTTP/1.1), a process of its own;
- `bare_app`: a minimal Starlette app under uvicorn, the framework's ceiling;
- `client`, `httpx_client`, `sse`, `loadgen`: the closed-loop load generator process;
- `fastloop`: uvloop for the benchmark's own processes;
- `procstat`: CPU and RSS of process trees, and what other processes used;
- `servers`, `litellm_venv`, `portkey_gateway`: installing, starting and stopping what is
  measured;
- `cells`, `summary`, `aggregate`, `report`, `targets`, `soak`: measuring, reducing, printing.

It is not a test: it exits non-zero only when it could not run, never because a target was
missed.
"""
