; Folds: every bracketed construct that may span lines, and block comments.
[
  (record)
  (block)
  (record_type)
  (parameters)
  (arguments)
  (list)
  (options)
  (triple_string)
  (block_comment)
] @fold
