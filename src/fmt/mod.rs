//! `orch fmt`: one canonical layout for `.orch` files.
//!
//! [`format_source`] parses the text, lays the AST out again (see `docs/language.md`,
//! "Formatting"), and puts every comment back: the AST has no comments, so they are collected
//! from the source with their offsets ([`comments::comments`]) and re-attached by position. A
//! comment on its own line stays on its own line before the code it preceded; a comment after
//! code stays at the end of that code's line.
//!
//! Meaning is kept by construction — string literals, `"""` blocks, numbers, durations and
//! money are copied from the source byte for byte, never re-escaped — and checked: the result
//! is parsed again and must give the same AST (spans aside) and the same comments, or the text
//! is refused rather than changed. Formatting is idempotent: formatting the result again
//! changes nothing.

pub mod command;
pub mod comments;
mod layout;

use crate::diag::{Code, Diagnostic, FileId, Span};
use crate::syntax::{self, ast::Module};

/// The maximum width of a record written on one line, in columns.
pub const WIDTH: usize = layout::WIDTH;

/// Formats one file's text.
///
/// # Errors
/// The `E0001` syntax error from [`syntax::parse`] when the text does not parse. An error
/// without a code when the layout would change the program or lose a comment (a bug in the
/// formatter); the text must then be left as it is.
pub fn format_source(text: &str) -> Result<String, Box<Diagnostic>> {
    let file = FileId(0);
    let module = syntax::parse(file, text)?;
    let found = comments::comments(text);
    let mut printer = layout::Printer::new(text, &found);
    printer.module(&module);
    let out = printer.render();
    let refuse = |why: &str| {
        Box::new(
            Diagnostic::new(
                Code::FormatRefused,
                Span::new(file, 0, 0),
                format!("cannot format this file: {why}"),
            )
            .with_help("this is a bug in `orch fmt`; the file was left as it is"),
        )
    };
    match syntax::parse(file, &out) {
        Ok(again) if same_program(&module, &again) => {}
        _ => return Err(refuse("the layout would change its meaning")),
    }
    if comment_texts(text) != comment_texts(&out) {
        return Err(refuse("a comment would be lost"));
    }
    Ok(out)
}

/// Whether two parses are the same program: equal ASTs once spans are left out.
pub fn same_program(a: &Module, b: &Module) -> bool {
    without_spans(&format!("{a:?}")) == without_spans(&format!("{b:?}"))
}

/// The debug form of an AST with every `Span { .. }` replaced by `Span`.
fn without_spans(debug: &str) -> String {
    let mut out = String::with_capacity(debug.len());
    let mut rest = debug;
    while let Some(at) = rest.find("Span {") {
        out.push_str(&rest[..at]);
        out.push_str("Span");
        rest = rest[at..].find('}').map_or("", |end| &rest[at + end + 1..]);
    }
    out.push_str(rest);
    out
}

/// The comments of a text as they are printed, sorted.
fn comment_texts(text: &str) -> Vec<&str> {
    let mut v: Vec<&str> = comments::comments(text)
        .iter()
        .map(|c| c.text(text))
        .collect();
    v.sort_unstable();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(src: &str) -> String {
        match format_source(src) {
            Ok(s) => s,
            Err(d) => panic!("{}: {}\n{src}", d.code, d.message),
        }
    }

    /// Formats, and checks that formatting again changes nothing.
    fn check(src: &str, expected: &str) {
        let out = fmt(src);
        assert_eq!(
            out, expected,
            "\n--- got:\n{out}\n--- expected:\n{expected}"
        );
        assert_eq!(fmt(&out), out, "not idempotent");
    }

    #[test]
    fn spans_are_left_out_of_the_comparison() {
        let a = syntax::parse(FileId(0), "agent a { model: x }").unwrap();
        let b = syntax::parse(FileId(0), "agent   a {\n  model:   x\n}\n").unwrap();
        let c = syntax::parse(FileId(0), "agent a { model: y }").unwrap();
        assert!(same_program(&a, &b));
        assert!(!same_program(&a, &c));
    }

    #[test]
    fn syntax_errors_are_e0001() {
        let err = format_source("workflow w { a = }").unwrap_err();
        assert_eq!(err.code, "E0001");
    }

    #[test]
    fn lays_out_a_workflow() {
        check(
            "include \"std/models.orch\"\nagent a {model:haiku,system:\"S\"}\nworkflow main(x:text)->text<budget $1.00>{\n  p = parallel<haiku,max 3>{ one=a(\"1 {x}\") ; two=a(\"2\")after one }\n\n\n  gather<min 1>r=a<retry 2 , timeout 30s>(\"r\")\n  return r }",
            "include \"std/models.orch\"\n\nagent a { model: haiku, system: \"S\" }\n\nworkflow main(x: text) -> text <budget $1.00> {\n  p = parallel <haiku, max 3> {\n    one = a(\"1 {x}\")\n    two = a(\"2\") after one\n  }\n\n  gather <min 1> r = a<retry 2, timeout 30s>(\"r\")\n  return r\n}\n",
        );
    }

    #[test]
    fn keeps_every_comment_in_place() {
        check(
            "// head\n\n/// Doc.\nagent a { model: haiku } // after a\n\nworkflow w() { // opens\n  // before x\n  x = a(\"1\")   // after x\n  y = a(\"2\") /* block */\n\n  // before end\n}\n// tail\n",
            "// head\n\n/// Doc.\nagent a { model: haiku }  // after a\n\nworkflow w() {  // opens\n  // before x\n  x = a(\"1\")  // after x\n  y = a(\"2\")  /* block */\n\n  // before end\n}\n// tail\n",
        );
    }

    #[test]
    fn a_comment_inside_a_record_breaks_it() {
        check(
            "model m { provider: p, /* why */ price: { input: 1, output: 2 } }\nprovider p { kind: sim }",
            "model m {\n  provider: p  /* why */\n  price: { input: 1, output: 2 }\n}\n\nprovider p { kind: sim }\n",
        );
    }

    #[test]
    fn records_break_when_long_or_broken_in_the_source() {
        let long = format!(
            "agent a {{ system: \"{}\", max_tokens: 3 }}",
            "x".repeat(80)
        );
        check(
            &long,
            &format!(
                "agent a {{\n  system: \"{}\"\n  max_tokens: 3\n}}\n",
                "x".repeat(80)
            ),
        );
        check("agent a {\n  model: m }", "agent a {\n  model: m\n}\n");
    }

    #[test]
    fn steps_and_declarations_align() {
        check(
            "agent a { model: m }\nagent bbb { model: m }\nworkflow w { x = a(\"1\")\n  yyy = bbb(\"2\")\n\n  z = a(\"3\") }",
            "agent a   { model: m }\nagent bbb { model: m }\n\nworkflow w {\n  x   = a(\"1\")\n  yyy = bbb(\"2\")\n\n  z = a(\"3\")\n}\n",
        );
    }

    #[test]
    fn strings_are_copied_verbatim() {
        check(
            "workflow w {\n    x = a(\"\\{ {{ \\\" \\n\", n: 007, d: 1h, m: $0.50, b: [1,2])\n    y = a(\"\"\"\n      keep   this\n        indentation\n      \"\"\")\n}",
            "workflow w {\n  x = a(\"\\{ {{ \\\" \\n\", n: 007, d: 1h, m: $0.50, b: [1, 2])\n  y = a(\"\"\"\n      keep   this\n        indentation\n      \"\"\")\n}\n",
        );
    }

    #[test]
    fn broken_argument_lists_get_one_argument_per_line() {
        check(
            "workflow w { x = a(\n  \"p\", // the prompt\n  focus: \"f\") }",
            "workflow w {\n  x = a(\n    \"p\",  // the prompt\n    focus: \"f\",\n  )\n}\n",
        );
    }

    #[test]
    fn then_blocks_and_empty_options() {
        check(
            "workflow w { parallel <> { then { a = x(\"1\"); b = x(\"2\") }\n c = x(\"3\") } }",
            "workflow w {\n  parallel {\n    then {\n      a = x(\"1\")\n      b = x(\"2\")\n    }\n    c = x(\"3\")\n  }\n}\n",
        );
    }

    #[test]
    fn parallel_for_over_a_list_or_a_path_with_options() {
        check(
            "workflow w { r = parallel<max 2,retry 1>for x in [\"a\",\"b\"]{ y = a(\"{x}\") }\n  parallel   for t in plan.tasks {z = a(\"{t}\")} }",
            "workflow w {\n  r = parallel <max 2, retry 1> for x in [\"a\", \"b\"] {\n    y = a(\"{x}\")\n  }\n  parallel for t in plan.tasks {\n    z = a(\"{t}\")\n  }\n}\n",
        );
        // A list broken in the source stays broken; its `]` starts the line of the `{`.
        check(
            "workflow w { parallel for x in [\n\"a\", // first\n\"b\"] { y = a(\"{x}\") } }",
            "workflow w {\n  parallel for x in [\n    \"a\",  // first\n    \"b\",\n  ] {\n    y = a(\"{x}\")\n  }\n}\n",
        );
    }

    #[test]
    fn until_follows_the_closing_brace() {
        let tidy = "workflow w {\n  repeat <max 3> {\n    v = a(\"1\")\n  } until v.ok\n}\n";
        check(
            "workflow w { repeat<max 3>{ v = a(\"1\") } until v.ok }",
            tidy,
        );
        check(
            "workflow w {\n  repeat <max 3> {\n    v = a(\"1\")\n  }\n\n  until v.ok\n}",
            tidy,
        );
        check(
            "workflow w { repeat <max 3> {} until true }",
            "workflow w {\n  repeat <max 3> {} until true\n}\n",
        );
    }

    #[test]
    fn if_else_and_else_if_chains() {
        check(
            "workflow w { if a.ok { x = a(\"1\") }\n else if n > 2 { y = a(\"2\") } else if false {} else { z = a(\"3\") } }",
            "workflow w {\n  if a.ok {\n    x = a(\"1\")\n  } else if n > 2 {\n    y = a(\"2\")\n  } else if false {} else {\n    z = a(\"3\")\n  }\n}\n",
        );
        // An `if` inside braces after `else` is not an `else if`; it keeps its braces.
        check(
            "workflow w { if a {} else { if b { x = a(\"1\") } } }",
            "workflow w {\n  if a {} else {\n    if b {\n      x = a(\"1\")\n    }\n  }\n}\n",
        );
    }

    #[test]
    fn nested_control_flow() {
        check(
            "workflow w { p = parallel <max 2> for x in xs { repeat <max 3> { if x == \"a\" { y = a(\"{x}\") } else { z = a(\"z\") } } until done } }",
            "workflow w {\n  p = parallel <max 2> for x in xs {\n    repeat <max 3> {\n      if x == \"a\" {\n        y = a(\"{x}\")\n      } else {\n        z = a(\"z\")\n      }\n    } until done\n  }\n}\n",
        );
    }

    /// `if COND {}` in a workflow, formatted.
    fn with_cond(cond: &str) -> String {
        format!("workflow w {{\n  if {cond} {{}}\n}}\n")
    }

    #[test]
    fn comparisons_keep_their_operands_as_written() {
        for op in ["==", "!=", "<", "<=", ">", ">="] {
            check(
                &format!("workflow w {{ if n{op}3 {{}} }}"),
                &with_cond(&format!("n {op} 3")),
            );
        }
        check(
            "workflow w { if a.b.c == \"x \\\" {y}\" {} }",
            &with_cond("a.b.c == \"x \\\" {y}\""),
        );
        check(
            "workflow w { if 1.50 != 007 {} }",
            &with_cond("1.50 != 007"),
        );
        check(
            "workflow w { if flag   ==   false {} }",
            &with_cond("flag == false"),
        );
    }

    #[test]
    fn conditions_get_parentheses_only_where_needed() {
        for (src, tidy) in [
            ("a and b or c", "a and b or c"),
            ("(a and b) or c", "a and b or c"),
            ("a or (b and c)", "a or b and c"),
            ("((a))", "a"),
            ("(a or b) or c", "a or b or c"),
            ("(a and b) and c", "a and b and c"),
            ("not (a)", "not a"),
            ("not not a", "not not a"),
            ("not (not a)", "not not a"),
            ("not a == b", "not a == b"),
            ("not (a == b)", "not a == b"),
            ("(not a) and b", "not a and b"),
            // Needed: `or` under `and` or `not`, `and` under `not`, and a right operand
            // grouped against the left-to-right grouping of the parser.
            ("(a or b) and c", "(a or b) and c"),
            ("a and (b or c)", "a and (b or c)"),
            ("not (a or b)", "not (a or b)"),
            ("not (a and b)", "not (a and b)"),
            ("a or (b or c)", "a or (b or c)"),
            ("a and (b and c)", "a and (b and c)"),
            (
                "a and ( b and c ) or ( d or e )",
                "a and (b and c) or (d or e)",
            ),
            (
                "not ((x.n >= 3 or y) and not z != \"q\")",
                "not ((x.n >= 3 or y) and not z != \"q\")",
            ),
        ] {
            check(&format!("workflow w {{ if {src} {{}} }}"), &with_cond(tidy));
        }
    }

    #[test]
    fn comments_in_and_around_control_flow_stay() {
        check(
            "workflow w {\n  // loop\n  repeat <max 3> { // opens\n    v = a(\"1\") // step\n    // end of body\n  } // before until\n  until v.ok // after until\n  if /* c */ x {\n    // only a comment\n  }\n  // between\n  else {} // after else\n}",
            "workflow w {\n  // loop\n  repeat <max 3> {  // opens\n    v = a(\"1\")  // step\n    // end of body\n    // before until\n  } until v.ok  // after until\n  if x {  /* c */\n    // only a comment\n    // between\n  } else {}  // after else\n}\n",
        );
        // A comment after a one-line `repeat` stays with the condition; after a one-line
        // `if` or `parallel`, it goes to the line that opens the block, as for steps.
        check(
            "workflow w {\n  repeat <max 2> { v = a(\"1\") } until v.ok // why\n  if v.ok { w = a(\"2\") } // why not\n}",
            "workflow w {\n  repeat <max 2> {\n    v = a(\"1\")\n  } until v.ok  // why\n  if v.ok {  // why not\n    w = a(\"2\")\n  }\n}\n",
        );
    }

    #[test]
    fn a_comment_after_the_brace_of_else_stays_in_its_block() {
        // Found by tests/it/fmt_control.rs: moved up to the `if` line, the comment left the
        // empty block, which then closed on its line the second time.
        check(
            "workflow w {\n  if v { s = a(\"go\") } else if v { // opens\n  }\n}\n",
            "workflow w {\n  if v {\n    s = a(\"go\")\n  } else if v {  // opens\n  }\n}\n",
        );
        check(
            "workflow w { parallel for x in [\n\"a\"] { // opens\n s = a(\"{x}\") } }",
            "workflow w {\n  parallel for x in [\n    \"a\",\n  ] {  // opens\n    s = a(\"{x}\")\n  }\n}\n",
        );
    }

    #[test]
    fn a_block_comment_before_code_on_its_line_stays_there() {
        check(
            "/// Doc.\n/* note */ agent a { model: m }\n",
            "/// Doc.\n/* note */ agent a { model: m }\n",
        );
    }

    #[test]
    fn crlf_files_stay_crlf_and_a_bom_is_kept() {
        check(
            "\u{feff}agent a {model: m}\r\n// c   \r\nworkflow w { x = a(\"\"\"\r\n  p\r\n  \"\"\") }",
            "\u{feff}agent a { model: m }\r\n\r\n// c\r\nworkflow w {\r\n  x = a(\"\"\"\r\n  p\r\n  \"\"\")\r\n}\r\n",
        );
    }

    #[test]
    fn a_layout_that_would_change_the_program_is_refused() {
        // Both items are on the line below the doc comment, so both get it; on lines of their
        // own only the first would.
        let err = format_source("/// d\nagent a { model: m }; agent b { model: m }\n").unwrap_err();
        assert_eq!(err.code, Code::FormatRefused);
        assert!(err.message.contains("meaning"), "{}", err.message);
    }

    #[test]
    fn comments_sharing_a_line_stay_on_it() {
        // `///` after another comment is not a doc comment; on a line of its own it would be.
        check(
            "agent a { model: m }\n\n/* c */ /// not a doc\nagent b { model: m }\n",
            "agent a { model: m }\n\n/* c */ /// not a doc\nagent b { model: m }\n",
        );
    }

    #[test]
    fn tools_mcp_and_max_turns() {
        check(
            "mcp fs{command:[\"npx\",\"srv\"],env:{K:\"v\"}}\nmcp d {url:\"http://h/mcp\"}\nagent s{model:m,tools:[read,exec( \"cargo test\" ,\"git diff\"),fs.read_text_file,d.*,agent(l)],max_turns:3}\nworkflow w<max_turns 2>{x=s<max_turns   4>(\"p\")}",
            "mcp fs { command: [\"npx\", \"srv\"], env: { K: \"v\" } }\nmcp d  { url: \"http://h/mcp\" }\n\nagent s {\n  model: m\n  tools: [read, exec(\"cargo test\", \"git diff\"), fs.read_text_file, d.*, agent(l)]\n  max_turns: 3\n}\n\nworkflow w <max_turns 2> {\n  x = s<max_turns 4>(\"p\")\n}\n",
        );
        // A grant list broken in the source: one grant per line, an `exec` kept on its line.
        check(
            "agent s { tools: [\n read, exec(\"a\") ] }",
            "agent s {\n  tools: [\n    read,\n    exec(\"a\"),\n  ]\n}\n",
        );
    }

    #[test]
    fn comments_only_and_empty_files() {
        check("", "");
        check("\n\n", "");
        check(
            "// just a comment   \n\n\n/* and */\n",
            "// just a comment\n\n/* and */\n",
        );
    }
}
