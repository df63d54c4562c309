; Symbols (tree-sitter tags, code navigation): what a script declares and the steps that
; call agents and workflows.
(agent_declaration
  name: (identifier) @name) @definition.function

(workflow_declaration
  name: (identifier) @name) @definition.function

(model_declaration
  name: (identifier) @name) @definition.constant

(provider_declaration
  name: (identifier) @name) @definition.module

(mcp_declaration
  name: (identifier) @name) @definition.module

(call
  callee: (callee
    name: (identifier) @name)) @reference.call
