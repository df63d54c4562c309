// The orch extension's client: starts `orch lsp` (the language server built into the orch
// binary, speaking the Language Server Protocol over stdio) for `.orch` files, and restarts
// it when its settings change or on the command "orch: Restart the language server".
//
// Settings (package.json, "contributes.configuration"):
//   orch.server.path       the orch program, a name looked up on PATH or a path (default "orch");
//                          `~/` is expanded and a relative path is taken from the first
//                          workspace folder;
//   orch.trace.server      "off" | "messages" | "verbose": the protocol log in the Output panel.
'use strict';

const os = require('os');
const path = require('path');
const vscode = require('vscode');
const { LanguageClient } = require('vscode-languageclient/node');

/** @type {LanguageClient | undefined} */
let client;

/** The command that starts the server, from the settings. */
function serverCommand() {
  const config = vscode.workspace.getConfiguration('orch');
  let command = config.get('server.path') || 'orch';
  if (command.startsWith('~/')) command = path.join(os.homedir(), command.slice(2));
  const folder = vscode.workspace.workspaceFolders && vscode.workspace.workspaceFolders[0];
  if (command.includes('/') && !path.isAbsolute(command) && folder) {
    command = path.join(folder.uri.fsPath, command);
  }
  return { command, args: ['lsp'] };
}

async function start(context) {
  const { command, args } = serverCommand();
  // No `transport`: with `TransportKind.stdio` the client would add `--stdio` to the
  // arguments, which `orch lsp` (stdio only, no options) rejects.
  const executable = { command, args };
  client = new LanguageClient(
    'orch',
    'orch',
    { run: executable, debug: executable },
    {
      documentSelector: [{ language: 'orch' }],
      synchronize: { fileEvents: vscode.workspace.createFileSystemWatcher('**/*.orch') },
    },
  );
  try {
    await client.start();
  } catch (err) {
    client = undefined;
    const choice = await vscode.window.showErrorMessage(
      `orch: could not start the language server \`${command} ${args.join(' ')}\` (${err && err.message ? err.message : err}). ` +
        'Install orch (cargo install --path . in its repository) or set "orch.server.path" to the orch binary.',
      'Open settings',
    );
    if (choice === 'Open settings') {
      vscode.commands.executeCommand('workbench.action.openSettings', 'orch.server.path');
    }
  }
  context.subscriptions.push({ dispose: () => client && client.stop() });
}

async function restart(context) {
  if (client) {
    const old = client;
    client = undefined;
    await old.stop().catch(() => {});
  }
  await start(context);
}

/** @param {vscode.ExtensionContext} context */
async function activate(context) {
  context.subscriptions.push(
    vscode.commands.registerCommand('orch.restartServer', () => restart(context)),
    vscode.workspace.onDidChangeConfiguration((e) =>
      e.affectsConfiguration('orch.server') ? restart(context) : undefined,
    ),
  );
  await start(context);
}

async function deactivate() {
  if (client) await client.stop();
}

module.exports = { activate, deactivate };
