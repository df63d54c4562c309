; Scopes, definitions and references: a workflow's parameters and steps are visible in its
; body (steps may be used before they are written: docs/language.md, "How steps are ordered");
; a `parallel for` variable in its block.
(workflow_declaration) @local.scope

(agent_declaration) @local.scope

(parallel_statement) @local.scope

(parameter
  name: (identifier) @local.definition)

(step
  name: (identifier) @local.definition)

(parallel_statement
  name: (identifier) @local.definition)

(for_clause
  variable: (identifier) @local.definition)

(path
  .
  (identifier) @local.reference)

(after_clause
  (identifier) @local.reference)
