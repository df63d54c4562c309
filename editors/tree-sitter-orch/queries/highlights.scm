; Highlights of the orch grammar. General patterns come first and specific ones later: where
; several patterns capture one node, the LAST one wins (tree-sitter's highlighter since 0.25,
; and Neovim), so a model tier is a constant rather than a variable.

; Punctuation and operators
[
  ","
  ";"
  ":"
  "."
] @punctuation.delimiter

[
  "("
  ")"
  "["
  "]"
  "{"
  "}"
] @punctuation.bracket

(options
  [
    "<"
    ">"
  ] @punctuation.bracket)

(policy
  [
    "<"
    ">"
  ] @punctuation.bracket)

(list_type
  [
    "<"
    ">"
  ] @punctuation.bracket)

[
  "="
  "->"
] @operator

(comparison
  operator: _ @operator)

; Literals
(boolean) @boolean

(money) @number

(duration) @number

(decimal) @number.float

(integer) @number

(string_content) @string

(triple_string) @string

(string) @string

(escape_sequence) @string.escape

(interpolation
  [
    "{"
    "}"
  ] @punctuation.special)

; Names
(path
  (identifier) @variable)

(after_clause
  (identifier) @variable)

(field_name) @variable.member

(for_clause
  variable: (identifier) @variable)

(parallel_statement
  name: (identifier) @variable)

(step
  name: (identifier) @variable)

(key) @property

; Fields whose value names a model or provider, and those whose value is a fixed word (model
; tiers, complexities, `on_truncated`)
((field
  key: (key) @property
  value: (path
    .
    (identifier) @type .))
  (#any-of? @property "model" "fallback" "provider"))

((field
  key: (key) @property
  value: (path
    .
    (identifier) @constant.builtin .))
  (#any-of? @property "tier" "complexity" "on_truncated"))

; Calls and tool grants
(callee
  name: (identifier) @function.call)

(callee
  namespace: (identifier) @module)

((callee
  name: (identifier) @function.builtin)
  (#eq? @function.builtin "approve"))

(tool_call
  name: (identifier) @function.builtin)

(wildcard
  server: (identifier) @module)

(wildcard
  "*" @character.special)

; Declarations
(parameter
  name: (identifier) @variable.parameter)

(include
  namespace: (identifier) @module)

(mcp_declaration
  name: (identifier) @module)

(provider_declaration
  name: (identifier) @type)

(model_declaration
  name: (identifier) @type)

(workflow_declaration
  name: (identifier) @function)

(agent_declaration
  name: (identifier) @function)

; Options (`<haiku, max 3, budget $2>`) and gather policies (`<first 2>`)
(option
  model: (identifier) @type)

(option
  value: (identifier) @type)

[
  "max"
  "max_turns"
  "retry"
  "timeout"
  "deadline"
  "fallback"
  "budget"
  "batch"
  "all"
  "any"
  "first"
  "min"
] @keyword.modifier

; Keywords
[
  "and"
  "or"
  "not"
] @keyword.operator

"return" @keyword.return

"fail" @keyword.exception

[
  "if"
  "else"
] @keyword.conditional

[
  "for"
  "in"
  "repeat"
  "until"
] @keyword.repeat

[
  "parallel"
  "then"
  "gather"
  "after"
] @keyword

[
  "agent"
  "workflow"
] @keyword.function

[
  "provider"
  "model"
  "mcp"
] @keyword.type

[
  "include"
  "as"
] @keyword.import

; Types
(type_name
  (identifier) @type)

((type_name
  (identifier) @type.builtin)
  (#any-of? @type.builtin "text" "number" "bool" "json"))

(type_name
  "agent" @type.builtin)

"list" @type.builtin

; Comments
(block_comment) @comment

(comment) @comment

(doc_comment) @comment.documentation
