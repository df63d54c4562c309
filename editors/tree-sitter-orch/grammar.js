/**
 * tree-sitter grammar of the `.orch` language, after grammar/orch.pest (the parser orch
 * itself uses) and docs/language.md.
 *
 * Differences from the pest grammar, all on the permissive side (an editor parses text that
 * is being typed; `orch check` is the judge of validity):
 * - newlines are white space everywhere, so items, statements and fields may be separated by
 *   a newline, `;` or `,` or by nothing at all;
 * - the nesting limit (64) is not enforced.
 * Everything the pest grammar accepts parses here without an ERROR node (scripts/editors.sh
 * parses every example and stdlib file to check it).
 *
 * @file tree-sitter grammar for orch
 * @license UNLICENSED
 */

/// <reference types="tree-sitter-cli/dsl" />
// @ts-check

// Field keys may be any word, keywords included (`model: haiku`).
const key = ($) => alias(reserved('key', $.identifier), $.key);
// The reserved words (grammar/orch.pest, `keyword`): never a name, except as a field key.
const RESERVED = [
  'include', 'provider', 'model', 'agent', 'workflow', 'mcp', 'parallel', 'then', 'gather',
  'after', 'return', 'true', 'false', 'as', 'for', 'in', 'repeat', 'until', 'if', 'else', 'and',
  'or', 'not',
];
const commaSep1 = (rule) => seq(rule, repeat(seq(',', rule)), optional(','));
const commaSep = (rule) => optional(commaSep1(rule));
// Items, statements and fields: separated by newlines (white space here), `;` or `,`.
const separated = (rule) => repeat(choice(rule, ';', ','));

module.exports = grammar({
  name: 'orch',

  word: ($) => $.identifier,

  reserved: {
    global: (_) => RESERVED,
    key: (_) => [],
  },

  extras: ($) => [/\s/, '\uFEFF', $.comment, $.doc_comment, $.block_comment],

  // Block comments nest, so an external scanner (src/scanner.c) reads them. `_string_guard` is
  // never produced: it only tells the scanner that a string is open (no comment starts there).
  externals: ($) => [$.block_comment, $._string_guard],

  conflicts: ($) => [
    // `after a, b` — a comma followed by `name =` starts the next statement instead.
    [$.after_clause],
  ],

  rules: {
    source_file: ($) => separated($._item),

    _item: ($) => choice(
      $.include,
      $.provider_declaration,
      $.model_declaration,
      $.mcp_declaration,
      $.agent_declaration,
      $.workflow_declaration,
    ),

    // ------------------------------------------------------------------ comments
    comment: (_) => token(prec(1, /\/\/[^\n]*/)),
    // A doc comment is `///` and then anything but a fourth slash.
    doc_comment: (_) => token(prec(2, /\/\/\/([^\/\n][^\n]*)?/)),

    // ------------------------------------------------------------------ items
    include: ($) => seq('include', field('path', $.string), optional(seq('as', field('namespace', $.identifier)))),
    provider_declaration: ($) => seq('provider', field('name', $.identifier), field('body', $.record)),
    model_declaration: ($) => seq('model', field('name', $.identifier), field('body', $.record)),
    mcp_declaration: ($) => seq('mcp', field('name', $.identifier), field('body', $.record)),
    agent_declaration: ($) => seq(
      'agent',
      field('name', $.identifier),
      optional(field('parameters', $.parameters)),
      field('body', $.record),
    ),
    workflow_declaration: ($) => seq(
      'workflow',
      field('name', $.identifier),
      optional(field('parameters', $.parameters)),
      optional(field('return_type', $.return_type)),
      optional(field('options', $.options)),
      field('body', $.block),
    ),

    parameters: ($) => seq('(', commaSep($.parameter), ')'),
    parameter: ($) => seq(
      field('name', $.identifier),
      optional(seq(':', field('type', $._type))),
      optional(seq('=', field('default', $._value))),
    ),
    return_type: ($) => seq('->', $._type),

    // ------------------------------------------------------------------ types
    _type: ($) => choice($.list_type, $.record_type, $.type_name),
    list_type: ($) => seq('list', '<', field('item', $._type), '>'),
    record_type: ($) => seq('{', separated($.type_field), '}'),
    type_field: ($) => seq(field('key', key($)), ':', field('type', $._type)),
    // `agent` is a keyword but also a type (of pattern parameters).
    type_name: ($) => choice($.identifier, 'agent'),

    // ------------------------------------------------------------------ options
    options: ($) => seq('<', commaSep($.option), '>'),
    option: ($) => choice(
      seq(field('name', 'max'), field('value', $.integer)),
      seq(field('name', 'max_turns'), field('value', $.integer)),
      seq(field('name', 'retry'), field('value', $.integer)),
      seq(field('name', 'timeout'), field('value', $.duration)),
      seq(field('name', 'deadline'), field('value', $.duration)),
      seq(field('name', 'fallback'), field('value', $.identifier)),
      seq(field('name', 'budget'), field('value', $.money)),
      field('name', 'batch'),
      field('model', $.identifier),
    ),
    policy: ($) => seq('<', choice('all', 'any', seq('first', $.integer), seq('min', $.integer)), '>'),

    // ------------------------------------------------------------------ statements
    block: ($) => seq('{', separated($._statement), '}'),

    _statement: ($) => choice(
      $.step,
      $.return_statement,
      $.gather_statement,
      $.then_statement,
      $.parallel_statement,
      $.repeat_statement,
      $.if_statement,
    ),

    step: ($) => seq(
      field('name', $.identifier),
      '=',
      field('call', $.call),
      repeat(choice($.after_clause, $.type_clause)),
    ),
    call: ($) => seq(
      field('callee', $.callee),
      optional(field('options', $.options)),
      field('arguments', $.arguments),
    ),
    callee: ($) => seq(
      optional(seq(field('namespace', $.identifier), token.immediate('.'))),
      field('name', $.identifier),
    ),
    arguments: ($) => seq('(', commaSep(choice($.named_argument, $._expression)), ')'),
    named_argument: ($) => seq(field('key', key($)), ':', field('value', $._expression)),

    after_clause: ($) => seq('after', $.identifier, repeat(seq(',', $.identifier))),
    type_clause: ($) => seq('->', $._type),

    return_statement: ($) => seq('return', $._expression),
    gather_statement: ($) => seq('gather', optional(field('policy', $.policy)), field('step', $.step)),
    then_statement: ($) => seq('then', field('body', $.block)),
    parallel_statement: ($) => seq(
      optional(seq(field('name', $.identifier), '=')),
      'parallel',
      optional(field('options', $.options)),
      optional(field('for', $.for_clause)),
      field('body', $.block),
    ),
    for_clause: ($) => seq('for', field('variable', $.identifier), 'in', field('items', choice($.list, $.path))),
    repeat_statement: ($) => seq(
      'repeat',
      optional(field('options', $.options)),
      field('body', $.block),
      'until',
      field('condition', $._condition),
      optional(seq('else', 'fail')),
    ),
    if_statement: ($) => seq(
      'if',
      field('condition', $._condition),
      field('consequence', $.block),
      optional(seq('else', field('alternative', choice($.if_statement, $.block)))),
    ),

    // ------------------------------------------------------------------ conditions
    _condition: ($) => choice(
      $.or_condition,
      $.and_condition,
      $.not_condition,
      $.parenthesized_condition,
      $.comparison,
      $._operand,
    ),
    or_condition: ($) => prec.left(1, seq(field('left', $._condition), 'or', field('right', $._condition))),
    and_condition: ($) => prec.left(2, seq(field('left', $._condition), 'and', field('right', $._condition))),
    not_condition: ($) => prec(3, seq('not', $._condition)),
    parenthesized_condition: ($) => seq('(', $._condition, ')'),
    comparison: ($) => prec(4, seq(
      field('left', $._operand),
      field('operator', choice('==', '!=', '<=', '>=', '<', '>')),
      field('right', $._operand),
    )),
    _operand: ($) => choice($.string, $.decimal, $.integer, $.boolean, $.path),

    // ------------------------------------------------------------------ values
    _expression: ($) => choice(
      $.triple_string, $.string, $.money, $.duration, $.decimal, $.integer, $.boolean, $.list, $.path,
    ),
    _value: ($) => choice(
      $.triple_string, $.string, $.money, $.duration, $.decimal, $.integer, $.boolean,
      $.list, $.record, $.tool_call, $.wildcard, $.path,
    ),
    list: ($) => seq('[', commaSep($._value), ']'),
    record: ($) => seq('{', separated($.field), '}'),
    field: ($) => seq(field('key', key($)), ':', field('value', $._value)),
    // Tool grants: `exec("cargo test")`, `agent(scout)`.
    tool_call: ($) => seq(
      field('name', choice($.identifier, alias('agent', $.identifier))),
      '(',
      commaSep($._value),
      ')',
    ),
    // Every tool of an MCP server: `fs.*`.
    wildcard: ($) => seq(field('server', $.identifier), token.immediate('.'), token.immediate('*')),
    // `name`, `name.field.field`.
    path: ($) => prec.right(seq($.identifier, repeat(seq(token.immediate('.'), alias($._field_name, $.field_name))))),
    _field_name: (_) => token.immediate(/[A-Za-z_][A-Za-z0-9_]*/),

    identifier: (_) => /[A-Za-z_][A-Za-z0-9_]*/,

    // ------------------------------------------------------------------ literals
    integer: (_) => /[0-9]+/,
    decimal: (_) => /[0-9]+\.[0-9]+/,
    duration: (_) => /[0-9]+(ms|s|m|h)/,
    money: (_) => /\$[0-9]+(\.[0-9]+)?/,
    boolean: (_) => choice('true', 'false'),

    string: ($) => seq(
      '"',
      repeat(choice($.string_content, $.escape_sequence, $.interpolation, $._string_guard)),
      token.immediate('"'),
    ),
    string_content: (_) => token.immediate(prec(3, /[^"\\{}\n]+/)),
    triple_string: ($) => seq(
      '"""',
      repeat(choice(
        alias($._triple_content, $.string_content),
        alias($._triple_quote, $.string_content),
        $.escape_sequence,
        $.interpolation,
        $._string_guard,
      )),
      token.immediate(prec(4, '"""')),
    ),
    _triple_content: (_) => token.immediate(prec(3, /[^"\\{}]+/)),
    // One or two quotes inside a triple-quoted string (three close it).
    _triple_quote: (_) => token.immediate(prec(3, /""?/)),
    escape_sequence: (_) => token.immediate(choice(/\\[ntr"\\{}0]/, '{{', '}}')),
    interpolation: ($) => seq(
      token.immediate('{'),
      alias($._interpolation_path, $.path),
      token.immediate('}'),
    ),
    _interpolation_path: ($) => seq(
      alias($._interpolation_name, $.identifier),
      repeat(seq(token.immediate('.'), alias($._field_name, $.field_name))),
    ),
    _interpolation_name: (_) => token.immediate(/[A-Za-z_][A-Za-z0-9_]*/),
  },
});
