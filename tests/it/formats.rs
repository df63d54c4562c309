//! The machine-readable diagnostic formats of `orch check`: `--format json` against its JSON
//! Schema (`docs/diagnostics.schema.json`), `--format sarif` against the OASIS SARIF 2.1.0
//! schema (`tests/data/sarif-schema-2.1.0.json`, see `tests/data/README.md`), and
//! `--format github` (workflow commands), on the failing scripts of `tests/ui/` and on clean
//! ones.

use std::path::{Path, PathBuf};
use std::process::Output;

use orch::diag::{Diagnostics, LintLevels, SourceMap, apply_levels, catalog};
use orch::resolve::ResolveOptions;
use serde_json::Value;

use crate::common::cli::{orch_command, stdout};
use crate::common::temp_dir;
use crate::common::ui::cases;

/// A clean script: no diagnostic.
const CLEAN: &str = "examples/scout_plan_build.orch";

/// Failing scripts of several kinds: several errors in one file, a lint, an error in an
/// included file, one two includes deep, a syntax error in an included file, an include cycle,
/// non-ASCII text.
const FAILING: &[&str] = &[
    "tests/ui/flow/all_errors_reported.orch",
    "tests/ui/models/pin_overrides_block.orch",
    "tests/ui/include/error_in_included.orch",
    "tests/ui/include/error_in_nested_include.orch",
    "tests/ui/include/syntax_error_in_included.orch",
    "tests/ui/include/cycle_of_three.orch",
    "tests/ui/names/model_and_agent_same_name.orch",
];

fn orch(args: &[&str]) -> Output {
    orch_command().args(args).output().expect("orch runs")
}

fn load_json(path: &str) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A validator for the schema at `path`, with `format` checked (`uri`, `date-time`, ...).
fn validator(path: &str) -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .build(&load_json(path))
        .unwrap_or_else(|e| panic!("{path} is not a usable schema: {e}"))
}

/// The validator of the OASIS SARIF schema. The schema is draft-04 but gives
/// `artifactLocation.uri` the draft-06 format `uri-reference`, which a draft-04 validator
/// ignores; it uses no keyword whose meaning changed between the two drafts
/// (`exclusiveMinimum`, `exclusiveMaximum`), so it is read as draft-06 to check that format.
fn sarif_validator() -> jsonschema::Validator {
    let path = "tests/data/sarif-schema-2.1.0.json";
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft6)
        .should_validate_formats(true)
        .build(&load_json(path))
        .unwrap_or_else(|e| panic!("{path} is not a usable schema: {e}"))
}

/// Every validation error of `doc`, one per line, with where in the document it is.
fn violations(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// Compiles like `orch check` with default lint levels.
fn compile(path: &str) -> (Diagnostics, SourceMap) {
    let (program, mut diags) = orch::compile_file(Path::new(path), &ResolveOptions::default());
    apply_levels(&mut diags, &program.sources, &LintLevels::default());
    (diags, program.sources)
}

// ------------------------------------------------------------------ JSON

#[test]
fn json_validates_against_its_schema() {
    let v = validator("docs/diagnostics.schema.json");
    for path in FAILING {
        let (diags, sources) = compile(path);
        assert!(!diags.is_empty(), "{path} has no diagnostic");
        let doc: Value = serde_json::from_str(&orch::diag::render_json(&diags, &sources)).unwrap();
        let bad = violations(&v, &doc);
        assert!(bad.is_empty(), "{path}:\n{}\n{doc:#}", bad.join("\n"));
    }
    // Through the binary: one file gives one report, several an array; a clean file too.
    for args in [
        vec!["check", "--format", "json", FAILING[0]],
        vec!["check", "--format", "json", FAILING[2], CLEAN, FAILING[1]],
        vec!["check", "--format", "json", CLEAN],
        vec!["check", "--format", "json", "tests/ui/no_such_file.orch"],
    ] {
        let doc: Value = serde_json::from_str(&stdout(&orch(&args))).expect("JSON");
        let bad = violations(&v, &doc);
        assert!(bad.is_empty(), "{args:?}:\n{}\n{doc:#}", bad.join("\n"));
    }
}

#[test]
fn json_schema_rejects_what_it_should() {
    let v = validator("docs/diagnostics.schema.json");
    let (diags, sources) = compile(FAILING[0]);
    let good: Value = serde_json::from_str(&orch::diag::render_json(&diags, &sources)).unwrap();
    assert!(v.is_valid(&good));
    let broken = |edit: &dyn Fn(&mut Value)| {
        let mut doc = good.clone();
        edit(&mut doc);
        doc
    };
    let cases: Vec<(&str, Value)> = vec![
        (
            "no name",
            broken(&|d| {
                d["diagnostics"][0].as_object_mut().unwrap().remove("name");
            }),
        ),
        (
            "bad code",
            broken(&|d| d["diagnostics"][0]["code"] = "X1".into()),
        ),
        (
            "bad severity",
            broken(&|d| d["diagnostics"][0]["severity"] = "fatal".into()),
        ),
        (
            "line 0",
            broken(&|d| d["diagnostics"][0]["labels"][0]["end_line"] = 0.into()),
        ),
        (
            "label without message",
            broken(&|d| {
                d["diagnostics"][0]["labels"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("message");
            }),
        ),
        (
            "two-line message",
            broken(&|d| d["diagnostics"][0]["message"] = "a\nb".into()),
        ),
    ];
    for (what, doc) in cases {
        assert!(!v.is_valid(&doc), "the schema accepts a report with {what}");
    }
}

#[test]
fn json_has_names_and_end_positions() {
    let (diags, sources) = compile("tests/ui/include/error_in_included.orch");
    let doc: Value = serde_json::from_str(&orch::diag::render_json(&diags, &sources)).unwrap();
    let d = &doc["diagnostics"][0];
    assert_eq!(d["code"], "E0203");
    assert_eq!(d["name"], "unknown-model");
    assert_eq!(d["file"], "tests/ui/include/support/misspelled_model.orch");
    // `sonet` on line 2, columns 25 to 30 (exclusive).
    assert_eq!(
        (&d["line"], &d["column"], &d["end_line"], &d["end_column"]),
        (&2.into(), &25.into(), &2.into(), &30.into())
    );
    let include = &d["labels"][1];
    assert_eq!(include["file"], "tests/ui/include/error_in_included.orch");
    assert_eq!(
        include["message"],
        "`tests/ui/include/support/misspelled_model.orch` included here"
    );
    assert_eq!(
        (&include["line"], &include["column"]),
        (&5.into(), &1.into())
    );
}

#[test]
fn json_and_sarif_carry_the_replacement_that_fixes_it() {
    // `sytem` (line 2, columns 33..38 of the included file) is a misspelled `system`.
    let path = "tests/ui/include/error_in_nested_include.orch";
    let inner = "tests/ui/include/support/team_inner.orch";
    let (diags, sources) = compile(path);
    let doc: Value = serde_json::from_str(&orch::diag::render_json(&diags, &sources)).unwrap();
    let d = &doc["diagnostics"][0];
    assert_eq!(
        (&d["code"], &d["replacement"]),
        (&"E0206".into(), &"system".into())
    );
    assert_eq!(d["file"], inner);
    let schema = validator("docs/diagnostics.schema.json");
    assert_eq!(violations(&schema, &doc), Vec::<String>::new());
    let text = std::fs::read_to_string(inner).unwrap();
    let (start, end) = (d["start"].as_u64().unwrap(), d["end"].as_u64().unwrap());
    assert_eq!(&text[start as usize..end as usize], "sytem");

    let log = sarif_of(&[PathBuf::from(path)]);
    assert_eq!(violations(&sarif_validator(), &log), Vec::<String>::new());
    let fix = &log["runs"][0]["results"][0]["fixes"][0];
    assert!(
        fix["description"]["text"]
            .as_str()
            .unwrap()
            .starts_with("did you mean `system`?")
    );
    let change = &fix["artifactChanges"][0];
    assert_eq!(change["artifactLocation"]["uri"], inner);
    let replacement = &change["replacements"][0];
    assert_eq!(replacement["insertedContent"]["text"], "system");
    let region = &replacement["deletedRegion"];
    assert_eq!(
        (
            &region["startLine"],
            &region["startColumn"],
            &region["endColumn"]
        ),
        (&2.into(), &33.into(), &38.into())
    );
    // A diagnostic without one has `null` and no `fixes`.
    let (diags, sources) = compile("tests/ui/models/pin_overrides_block.orch");
    let doc: Value = serde_json::from_str(&orch::diag::render_json(&diags, &sources)).unwrap();
    assert_eq!(doc["diagnostics"][0]["replacement"], Value::Null);
    let log = sarif_of(&[PathBuf::from("tests/ui/models/pin_overrides_block.orch")]);
    assert!(log["runs"][0]["results"][0].get("fixes").is_none());
}

// ------------------------------------------------------------------ SARIF

/// The SARIF log of several files checked together, as `orch check --format sarif` makes it.
fn sarif_of(paths: &[PathBuf]) -> Value {
    let compiled: Vec<(Diagnostics, SourceMap)> = paths
        .iter()
        .map(|p| compile(&p.to_string_lossy()))
        .collect();
    let pairs: Vec<(&Diagnostics, &SourceMap)> = compiled.iter().map(|(d, s)| (d, s)).collect();
    serde_json::from_str(&orch::diag::render_sarif(&pairs)).expect("SARIF is JSON")
}

#[test]
fn sarif_validates_against_the_oasis_schema() {
    let v = sarif_validator();
    // Every UI case in one log: every code, includes, the stdlib, multi-line spans.
    let log = sarif_of(&cases());
    let results = log["runs"][0]["results"].as_array().unwrap();
    assert!(results.len() >= cases().len(), "{} results", results.len());
    let bad = violations(&v, &log);
    assert!(bad.is_empty(), "{}", bad.join("\n"));

    // A file outside the working directory, with a space and a non-ASCII letter in its name.
    let dir = temp_dir();
    let outside = dir.path().join("my é script.orch");
    std::fs::write(
        &outside,
        "workflow main() { a = nobody(\"x\")\n  return a }\n",
    )
    .unwrap();
    let outside = outside.to_string_lossy().into_owned();
    let o = orch(&["check", "--format", "sarif", &outside]);
    let doc: Value = serde_json::from_str(&stdout(&o)).expect("SARIF on stdout");
    assert!(violations(&v, &doc).is_empty(), "{doc:#}");
    let uri = &doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"];
    assert!(
        uri["uri"].as_str().unwrap().starts_with("file:///")
            && uri["uri"]
                .as_str()
                .unwrap()
                .ends_with("/my%20%C3%A9%20script.orch")
            && uri.get("uriBaseId").is_none(),
        "{uri}"
    );

    for args in [
        vec!["check", "--format", "sarif", FAILING[0], FAILING[2]],
        vec!["check", "--format", "sarif", CLEAN],
        vec!["check", "--format", "sarif", "tests/ui/no_such_file.orch"],
    ] {
        let o = orch(&args);
        let doc: Value = serde_json::from_str(&stdout(&o)).expect("SARIF on stdout");
        let bad = violations(&v, &doc);
        assert!(bad.is_empty(), "{args:?}:\n{}", bad.join("\n"));
        assert_eq!(doc["runs"].as_array().map(Vec::len), Some(1), "{args:?}");
    }
}

#[test]
fn sarif_schema_rejects_a_broken_log() {
    let v = sarif_validator();
    let mut log = sarif_of(&[PathBuf::from(FAILING[0])]);
    assert!(v.is_valid(&log));
    let mut bad_level = log.clone();
    bad_level["runs"][0]["results"][0]["level"] = "fatal".into();
    assert!(!v.is_valid(&bad_level));
    // `format: uri-reference` is checked: a path with a space is not a URI.
    let place = "/runs/0/results/0/locations/0/physicalLocation/artifactLocation/uri";
    *log.pointer_mut(place).unwrap() = "tests/ui/all errors.orch".into();
    assert!(!v.is_valid(&log));
}

#[test]
fn sarif_clean_file_has_no_results_and_every_rule() {
    let o = orch(&["check", "--format", "sarif", CLEAN]);
    assert_eq!(o.status.code(), Some(0));
    let log: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(log["version"], "2.1.0");
    let run = &log["runs"][0];
    assert_eq!(run["results"], serde_json::json!([]));
    assert_eq!(run["tool"]["driver"]["name"], "orch");
    assert_eq!(run["tool"]["driver"]["version"], env!("CARGO_PKG_VERSION"));
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    let ids: Vec<&str> = rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
    let codes: Vec<&str> = catalog::all().iter().map(|c| c.code.as_str()).collect();
    assert_eq!(ids, codes);
    for (rule, info) in rules.iter().zip(catalog::all()) {
        assert_eq!(rule["name"], info.name);
        assert_eq!(rule["shortDescription"]["text"], info.summary);
        let level = if info.is_lint() { "warning" } else { "error" };
        assert_eq!(rule["defaultConfiguration"]["level"], level);
        assert!(rule["help"]["text"].as_str().unwrap().contains(info.why));
        let markdown = rule["help"]["markdown"].as_str().unwrap();
        assert!(markdown.starts_with(&format!("# {} `{}`", info.code, info.name)));
    }
}

#[test]
fn sarif_results_point_at_their_rules_and_places() {
    let paths = [
        PathBuf::from("tests/ui/include/error_in_nested_include.orch"),
        PathBuf::from("tests/ui/models/pin_overrides_block.orch"),
    ];
    let log = sarif_of(&paths);
    let run = &log["runs"][0];
    assert_eq!(run["columnKind"], "utf16CodeUnits");
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    let results = run["results"].as_array().unwrap();
    for r in results {
        let index = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[index]["id"], r["ruleId"]);
    }
    let nested = &results[0];
    assert_eq!(nested["ruleId"], "E0206");
    assert_eq!(nested["level"], "error");
    let place = &nested["locations"][0]["physicalLocation"];
    assert_eq!(
        place["artifactLocation"]["uri"],
        "tests/ui/include/support/team_inner.orch"
    );
    assert_eq!(place["artifactLocation"]["uriBaseId"], "%SRCROOT%");
    assert_eq!(place["region"]["startLine"], 2);
    let related: Vec<&str> = nested["relatedLocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            l["physicalLocation"]["artifactLocation"]["uri"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(
        related,
        [
            "tests/ui/include/support/team_outer.orch",
            "tests/ui/include/error_in_nested_include.orch"
        ]
    );
    assert!(
        nested["message"]["text"]
            .as_str()
            .unwrap()
            .contains("\nhelp: did you mean `system`?")
    );
    let lint = &results[1];
    assert_eq!(
        (&lint["ruleId"], &lint["level"]),
        (&"W0402".into(), &"warning".into())
    );
}

#[test]
fn sarif_names_stdlib_files_by_their_own_base() {
    let log = sarif_of(&[PathBuf::from(
        "tests/ui/names/model_and_agent_same_name.orch",
    )]);
    let run = &log["runs"][0];
    let locations: Vec<&Value> = run["results"][0]["relatedLocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| &l["physicalLocation"]["artifactLocation"])
        .collect();
    assert!(
        locations
            .iter()
            .any(|a| a["uri"] == "models.orch" && a["uriBaseId"] == "ORCH_STDLIB"),
        "{locations:?}"
    );
    assert!(run["originalUriBaseIds"]["ORCH_STDLIB"]["description"]["text"].is_string());
}

// ------------------------------------------------------------------ GitHub

#[test]
fn github_prints_one_command_per_diagnostic() {
    let o = orch(&["check", "--format", "github", FAILING[0], FAILING[1]]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    let expected: usize = [FAILING[0], FAILING[1]]
        .iter()
        .map(|p| compile(p).0.len())
        .sum();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), expected, "{out}");
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("::error ") || l.starts_with("::warning "))
    );
    assert!(
        lines.contains(
            &"::error file=tests/ui/flow/all_errors_reported.orch,line=11,col=13,endLine=11,\
              endColumn=18,title=E0202 unknown-agent::unknown agent `scuot`%0Ahelp: did you \
              mean `scout`?"
        ),
        "{out}"
    );
    assert!(
        lines.iter().any(|l| l
            .starts_with("::warning file=tests/ui/models/pin_overrides_block.orch,")
            && l.contains(",title=W0402 block-model-overridden::")),
        "{out}"
    );
}

#[test]
fn github_mentions_the_include() {
    let o = orch(&[
        "check",
        "--format",
        "github",
        "tests/ui/include/error_in_included.orch",
    ]);
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.starts_with(
            "::error file=tests/ui/include/support/misspelled_model.orch,line=2,col=25,"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "%0Atests/ui/include/error_in_included.orch:5:1: \
             `tests/ui/include/support/misspelled_model.orch` included here"
        ),
        "{out}"
    );
}

#[test]
fn github_prints_nothing_for_a_clean_file() {
    let o = orch(&["check", "--format", "github", CLEAN]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), "");
}
