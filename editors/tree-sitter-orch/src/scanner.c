// External scanner of the orch grammar: block comments, which nest (`/* a /* b */ c */` is
// one comment, docs/language.md §1), so no regular expression can match them.
// An unterminated comment runs to the end of the file (as `orch check` reports E0001 there).

#include "tree_sitter/parser.h"

enum TokenType { BLOCK_COMMENT, STRING_GUARD };

void *tree_sitter_orch_external_scanner_create(void) { return NULL; }
void tree_sitter_orch_external_scanner_destroy(void *payload) { (void)payload; }
unsigned tree_sitter_orch_external_scanner_serialize(void *payload, char *buffer) {
  (void)payload;
  (void)buffer;
  return 0;
}
void tree_sitter_orch_external_scanner_deserialize(void *payload, const char *buffer, unsigned length) {
  (void)payload;
  (void)buffer;
  (void)length;
}

bool tree_sitter_orch_external_scanner_scan(void *payload, TSLexer *lexer, const bool *valid_symbols) {
  (void)payload;
  // Inside a string, `/*` is text (`STRING_GUARD` is valid only there, and never produced).
  if (!valid_symbols[BLOCK_COMMENT] || valid_symbols[STRING_GUARD]) return false;
  while (lexer->lookahead == ' ' || lexer->lookahead == '\t' || lexer->lookahead == '\r' ||
         lexer->lookahead == '\n' || lexer->lookahead == 0xFEFF) {
    lexer->advance(lexer, true);
  }
  if (lexer->lookahead != '/') return false;
  lexer->advance(lexer, false);
  if (lexer->lookahead != '*') return false;
  lexer->advance(lexer, false);
  unsigned depth = 1;
  while (depth > 0) {
    if (lexer->eof(lexer)) break;
    if (lexer->lookahead == '/') {
      lexer->advance(lexer, false);
      if (lexer->lookahead == '*') {
        lexer->advance(lexer, false);
        depth++;
      }
    } else if (lexer->lookahead == '*') {
      lexer->advance(lexer, false);
      if (lexer->lookahead == '/') {
        lexer->advance(lexer, false);
        depth--;
      }
    } else {
      lexer->advance(lexer, false);
    }
  }
  lexer->mark_end(lexer);
  lexer->result_symbol = BLOCK_COMMENT;
  return true;
}
