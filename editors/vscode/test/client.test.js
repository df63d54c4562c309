// Checks src/extension.js against stand-ins for the `vscode` API and for
// vscode-languageclient (neither runs outside VS Code): the server command it starts from the
// settings (`orch lsp` by default, `orch.server.path` with `~/` expanded and relative paths
// taken from the workspace folder), the documents it asks
// for, the restart on a settings change, and the error shown when the server cannot start.
//
// Run: `node test/client.test.js` (scripts/editors.sh runs it). Exits non-zero on a failure.
'use strict';

const assert = require('assert');
const Module = require('module');
const os = require('os');
const path = require('path');

const started = [];
const stopped = [];
const errors = [];
let settings = {};
let configListener;
let failStart = false;

class LanguageClient {
  constructor(id, name, serverOptions, clientOptions) {
    Object.assign(this, { id, name, serverOptions, clientOptions });
  }
  async start() {
    if (failStart) throw new Error('spawn orch ENOENT');
    started.push(this);
  }
  async stop() {
    stopped.push(this);
  }
}

const vscode = {
  workspace: {
    workspaceFolders: [{ uri: { fsPath: '/ws' } }],
    getConfiguration: (section) => {
      assert.strictEqual(section, 'orch');
      return { get: (key) => settings[key] };
    },
    onDidChangeConfiguration: (listener) => {
      configListener = listener;
      return { dispose() {} };
    },
    createFileSystemWatcher: (glob) => ({ glob }),
  },
  commands: {
    registered: {},
    registerCommand(name, fn) {
      this.registered[name] = fn;
      return { dispose() {} };
    },
    executeCommand() {},
  },
  window: {
    showErrorMessage: async (message) => {
      errors.push(message);
      return undefined;
    },
  },
};

const load = Module._load;
Module._load = function (request, parent, isMain) {
  if (request === 'vscode') return vscode;
  if (request === 'vscode-languageclient/node') return { LanguageClient, TransportKind: { stdio: 0 } };
  return load.call(this, request, parent, isMain);
};

const extension = require(path.join(__dirname, '..', 'src', 'extension.js'));
const context = { subscriptions: [] };

(async () => {
  // Defaults: `orch lsp` on PATH, for orch documents.
  await extension.activate(context);
  assert.strictEqual(started.length, 1);
  let client = started[0];
  // Exactly `orch lsp`: no `transport`, with which vscode-languageclient would append
  // `--stdio` (node_modules/vscode-languageclient/lib/node/main.js), an argument `orch lsp`
  // does not take.
  assert.deepStrictEqual(client.serverOptions.run, { command: 'orch', args: ['lsp'] });
  assert.deepStrictEqual(client.serverOptions.debug, client.serverOptions.run);
  assert.deepStrictEqual(client.clientOptions.documentSelector, [{ language: 'orch' }]);
  assert.strictEqual(client.clientOptions.synchronize.fileEvents.glob, '**/*.orch');
  assert.ok(vscode.commands.registered['orch.restartServer'], 'the restart command is registered');
  // The command is declared in package.json too.
  const pkg = require('../package.json');
  assert.ok(pkg.contributes.commands.some((c) => c.command === 'orch.restartServer'));
  assert.strictEqual(pkg.contributes.configuration.properties['orch.server.path'].default, 'orch');
  assert.deepStrictEqual(pkg.activationEvents, ['onLanguage:orch']);
  // The files package.json names exist, and the language configuration's patterns compile.
  const fs = require('fs');
  const root = path.join(__dirname, '..');
  const [language] = pkg.contributes.languages;
  assert.deepStrictEqual([language.id, language.extensions], ['orch', ['.orch']]);
  const langConfig = JSON.parse(fs.readFileSync(path.join(root, language.configuration), 'utf8'));
  assert.ok(fs.existsSync(path.join(root, pkg.contributes.grammars[0].path)));
  assert.ok(fs.existsSync(path.join(root, pkg.main)));
  assert.deepStrictEqual(langConfig.comments, { lineComment: '//', blockComment: ['/*', '*/'] });
  for (const pattern of [langConfig.wordPattern, ...Object.values(langConfig.indentationRules),
    ...Object.values(langConfig.folding.markers), ...langConfig.onEnterRules.map((r) => r.beforeText)]) {
    new RegExp(pattern); // throws on a pattern that does not compile
  }
  assert.ok(new RegExp(langConfig.wordPattern).exec('$2.50')[0] === '$2.50', 'money is one word');

  // A settings change restarts it with the new command, `~/` expanded.
  settings = { 'server.path': '~/bin/orch' };
  await configListener({ affectsConfiguration: (s) => s === 'orch.server' });
  assert.strictEqual(stopped[0], client, 'the old server is stopped');
  client = started[1];
  assert.deepStrictEqual(client.serverOptions.run.command, path.join(os.homedir(), 'bin/orch'));
  assert.deepStrictEqual(client.serverOptions.run.args, ['lsp']);

  // Other settings do not restart it.
  await configListener({ affectsConfiguration: () => false });
  assert.strictEqual(started.length, 2);

  // A relative path is taken from the workspace folder.
  settings = { 'server.path': 'target/debug/orch' };
  await vscode.commands.registered['orch.restartServer']();
  assert.strictEqual(started.length, 3, 'the restart command starts a new server');
  assert.strictEqual(started[2].serverOptions.run.command, '/ws/target/debug/orch');

  // A server that cannot start is reported, naming the command and the setting.
  failStart = true;
  settings = {};
  await vscode.commands.registered['orch.restartServer']();
  assert.strictEqual(errors.length, 1);
  assert.match(errors[0], /`orch lsp`/);
  assert.match(errors[0], /orch\.server\.path/);
  assert.match(errors[0], /ENOENT/);

  await extension.deactivate();
})().catch((e) => {
  console.error('client.test.js:', e);
  process.exit(1);
});
