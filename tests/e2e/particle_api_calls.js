// particle-api-js calls for tests/e2e/test_particle_cli.py: prints what came back as one JSON line.
const Particle = require(process.env.API_JS);
const particle = new Particle({ baseUrl: process.env.BASE_URL });
const auth = process.env.TOKEN;
(async () => {
  const out = {};
  const list = await particle.listLogicFunctions({ auth });
  out.names = list.body.logic_functions.map((f) => f.name);
  const id = list.body.logic_functions[0].id;
  const one = await particle.getLogicFunction({ auth, logicFunctionId: id });
  out.code = one.body.logic_function.source.code;
  const stream = await particle.getEventStream({ name: "api-js", auth });
  const seen = new Promise((resolve) => stream.on("event", (e) => { stream.abort(); resolve(e); }));
  await particle.publishEvent({ name: "api-js/hello", data: "from-node", isPrivate: true, auth });
  out.event = await seen;
  const runs = await particle.listLogicRuns({ auth, logicFunctionId: id });
  out.runs = runs.body.logic_runs.length;
  const logs = await particle.getLogicRunLogs({ auth, logicFunctionId: id, logicRunId: runs.body.logic_runs[0].id });
  out.logs = logs.body.logs;
  try { await particle.getLogicFunction({ auth, logicFunctionId: "nope" }); } catch (e) { out.missing = e.statusCode; }
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
