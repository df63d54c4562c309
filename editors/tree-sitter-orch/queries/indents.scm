; Indentation (Neovim's nvim-treesitter captures): one level inside every bracket pair.
[
  (record)
  (block)
  (record_type)
  (parameters)
  (arguments)
  (list)
  (options)
] @indent.begin

[
  "}"
  "]"
  ")"
] @indent.branch @indent.end

[
  (comment)
  (block_comment)
  (doc_comment)
] @indent.auto

(triple_string) @indent.ignore
