#!/usr/bin/env node
/** `kascade-server`: parse flags and environment, serve, shut down cleanly on SIGINT/SIGTERM. */
import { ConfigError, parseConfig, USAGE } from './config.js';
import { startServer } from './serve.js';

async function main(): Promise<number> {
  let config: ReturnType<typeof parseConfig>;
  try {
    config = parseConfig(process.argv.slice(2), process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`kascade-server: ${error.message}\n\n${USAGE}`);
      return 2;
    }
    throw error;
  }
  if (config.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const log = (line: string) => process.stderr.write(`kascade-server: ${line}\n`);
  const { server, url } = await startServer(config, log);
  log(`listening on ${url} (playground: ${url}/, API: ${url}/v1)`);
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) {
        log(`${signal} again: exiting now`);
        resolve(1);
        return;
      }
      stopping = true;
      log(`${signal}: no new requests; giving in-flight ones ${config.shutdownGraceS} s`);
      server
        .shutdown({ graceMs: config.shutdownGraceS * 1000 })
        .then(() => server.engine.dispose())
        .then(
          () => {
            log('stopped');
            resolve(0);
          },
          (error: unknown) => {
            log(`shutdown failed: ${error instanceof Error ? error.message : String(error)}`);
            resolve(1);
          },
        );
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    // Loading errors (model, plan, backend) say what is wrong in their message; the stack
    // only with KASCADE_DEBUG=1.
    const detail =
      error instanceof Error
        ? process.env.KASCADE_DEBUG === '1'
          ? (error.stack ?? error.message)
          : `${error.name}: ${error.message}`
        : String(error);
    process.stderr.write(`kascade-server: cannot start: ${detail}\n`);
    process.exit(1);
  },
);
