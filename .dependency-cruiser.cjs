// The layering of the code, checked by `npm run lint` (dependency-cruiser). Bottom to top:
//
//   runtime     process plumbing: config, logger, metrics, Kafka port, codec port, db, errors, decimals
//   schemas     record types, Avro codecs, the topic codec, the schema registry
//   pipelines   the stages and their pure rules; ports they define (exchange-port.ts)
//   connectors  adapters: Bybit REST / websocket, RabbitMQ bridges, reconciler, kill switch
//   model       the model service
//   sim         the exchange simulator: stands on runtime only, so it tests the code, not itself
//   stack       composition root (services.ts: units, their settings), local stack, chaos, bench
//   cli         the operator's command line
//
// A folder imports only from its own and the folders below it, and no import cycle crosses folders.
// (Cycles inside a folder are allowed; none of them crosses a layer.)
const LAYERS = ['runtime', 'schemas', 'pipelines', 'connectors', 'model'];
const below = (i) => LAYERS.slice(0, i + 1).join('|');
const PROJECT = '^(runtime|schemas|pipelines|connectors|model|sim|stack|cli|tests)/';

module.exports = {
  forbidden: [
    ...LAYERS.map((layer, i) => ({
      name: `${layer}-imports-only-below`,
      comment: `${layer}/ may import only from ${LAYERS.slice(0, i + 1).join(', ')} (see the layering at the top of .dependency-cruiser.cjs)`,
      severity: 'error',
      from: { path: `^${layer}/` },
      to: { path: PROJECT, pathNot: `^(${below(i)})/` },
    })),
    {
      name: 'sim-stands-alone',
      comment: 'the simulator imports only runtime/ (it must not test the order manager with its own rules)',
      severity: 'error',
      from: { path: '^sim/' },
      to: { path: PROJECT, pathNot: '^(runtime|sim)/' },
    },
    {
      name: 'stack-below-cli-and-tests',
      comment: 'stack/ composes everything but the CLI and the tests',
      severity: 'error',
      from: { path: '^stack/' },
      to: { path: '^(cli|tests)/' },
    },
    {
      name: 'no-code-imports-tests',
      severity: 'error',
      from: { path: '^(runtime|schemas|pipelines|connectors|model|sim|stack|cli)/' },
      to: { path: '^tests/' },
    },
    {
      name: 'no-cycle-across-folders',
      comment: 'an import cycle that leaves its folder ties the layers together',
      severity: 'error',
      from: { path: '^([^/]+)/' },
      to: { circular: true, viaSomeNot: '^$1/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(node_modules|dist|\\.stack|reports)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js', '.mjs', '.json'] },
  },
};
