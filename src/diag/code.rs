//! The diagnostic codes as a typed enum: every [`super::Diagnostic`] carries one [`Code`],
//! never a string, so that a code cannot be misspelt where a diagnostic is made. The
//! [`super::catalog`] has exactly one entry per code (its tests check both ways); a code's
//! default severity, name and documentation are read from there.
//!
//! The variants are named after the codes' kebab-case names (`E0201` `undefined-name` is
//! [`Code::UndefinedName`]) and declared in code order, so that sorting by [`Code`] sorts by
//! the code's text.

use serde::Serialize;

/// Declares [`Code`] from `Variant = "E0000"` pairs: the enum, [`Code::ALL`] and
/// [`Code::as_str`], from the one list.
macro_rules! codes {
    ($($(#[$doc:meta])* $variant:ident = $code:literal,)*) => {
        /// A stable diagnostic code. Its text (`E0201`) is [`Code::as_str`]; `E` for errors,
        /// `W` for warnings (lints), then four digits.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code {
            $($(#[$doc])* $variant,)*
        }

        impl Code {
            /// Every code, in code order.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The code as written in reports and accepted on the command line: `E0201`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $code,)*
                }
            }
        }
    };
}

codes! {
    /// `E0001`: the script does not parse.
    SyntaxError = "E0001",
    /// `E0100`: the script given on the command line cannot be read.
    UnreadableScript = "E0100",
    /// `E0101`: an included file is missing or unreadable.
    IncludeNotFound = "E0101",
    /// `E0102`: files include each other in a cycle.
    IncludeCycle = "E0102",
    /// `E0103`: an include leaves the entry script's directory.
    IncludeOutsideProject = "E0103",
    /// `E0104`: two includes use the same namespace.
    DuplicateNamespace = "E0104",
    /// `W0105`: a file includes the same file twice.
    DuplicateInclude = "W0105",
    /// `E0201`: a name that is not defined.
    UndefinedName = "E0201",
    /// `E0202`: a step calls an agent that is not declared.
    UnknownAgent = "E0202",
    /// `E0203`: a model that is not declared.
    UnknownModel = "E0203",
    /// `E0204`: a model names a provider that is not declared.
    UnknownProvider = "E0204",
    /// `E0205`: something is defined twice.
    DuplicateDefinition = "E0205",
    /// `E0206`: a field an item or record does not know.
    UnknownField = "E0206",
    /// `E0207`: a field's value has the wrong kind.
    InvalidFieldValue = "E0207",
    /// `E0208`: a required field is missing.
    MissingField = "E0208",
    /// `E0209`: a type that is not a type of the language.
    UnknownType = "E0209",
    /// `E0210`: a field access that cannot work.
    InvalidFieldAccess = "E0210",
    /// `E0211`: a call's arguments do not fit the agent.
    InvalidArguments = "E0211",
    /// `E0212`: a value of the wrong type.
    TypeMismatch = "E0212",
    /// `E0301`: steps wait for each other in a cycle.
    DependencyCycle = "E0301",
    /// `E0303`: a workflow calls itself.
    RecursiveCall = "E0303",
    /// `E0304`: expanding calls passes a bound.
    ExpansionTooLarge = "E0304",
    /// `E0401`: a step of a model agent has no model.
    StepWithoutModel = "E0401",
    /// `W0402`: an agent's pinned model overrides the block's.
    BlockModelOverridden = "W0402",
    /// `E0403`: a model or fallback given to a command agent.
    ModelOnCommandAgent = "E0403",
    /// `W0404`: a model's tier does not suit the agent's complexity.
    ComplexityTierMismatch = "W0404",
    /// `W0405`: a block option that an agent's own field overrides.
    BlockOptionOverridden = "W0405",
    /// `E0501`: a `gather` that does not follow a `parallel` block.
    MisplacedGather = "E0501",
    /// `E0502`: an option not allowed where it is written, or given twice.
    InvalidOption = "E0502",
    /// `E0503`: a value that can never work.
    ImpossibleValue = "E0503",
    /// `E0505`: a statement after `return`, or a misplaced `return`.
    MisplacedReturn = "E0505",
    /// `E0506`: a `parallel` block with no branches.
    EmptyParallel = "E0506",
    /// `W0507`: a `parallel` block with a single branch.
    SingleBranchParallel = "W0507",
    /// `E0508`: the body of a `parallel for` does not end with a step.
    ForBodyResult = "E0508",
    /// `W0509`: a step of a `parallel <batch>` block bounded by a `deadline` or `timeout`
    /// shorter than the batch APIs' 24-hour completion window.
    BatchWindowBound = "W0509",
    /// `E0601`: an API key written in the script.
    LiteralApiKey = "E0601",
    /// `E0602`: model output reaches a command's argv.
    ModelOutputInArgv = "E0602",
    /// `E0701`: which workflow to plan or run cannot be told.
    NoEntryWorkflow = "E0701",
    /// `W0801`: a model step whose output nothing reads.
    UnusedOutput = "W0801",
    /// `W0802`: independent model steps written one after another.
    ParallelizableSequence = "W0802",
    /// `W0803`: a worst-case cost over its budget.
    BudgetExceeded = "W0803",
    /// `W0804`: a step's worst-case request over its model's context window.
    ContextWindowExceeded = "W0804",
    /// `W0901`: an `allow` comment that silences nothing.
    UnusedAllow = "W0901",
    /// `E1001`: `orch fmt` cannot lay the file out without changing its meaning.
    FormatRefused = "E1001",
    /// `E1201`: a tool grant that names no tool.
    UnknownTool = "E1201",
    /// `E1202`: an `exec` grant without a usable prefix.
    InvalidExec = "E1202",
    /// `E1203`: a grant names an MCP server that is not declared.
    UnknownMcpServer = "E1203",
    /// `E1204`: an `agent(NAME)` grant that cannot delegate.
    InvalidDelegation = "E1204",
    /// `E1205`: agents delegate to each other in a cycle.
    DelegationCycle = "E1205",
    /// `E1206`: a chain of delegations deeper than the bound.
    DelegationTooDeep = "E1206",
    /// `E1207`: an agent-loop setting on an agent without tools.
    TurnsWithoutTools = "E1207",
    /// `W1208`: a `low`-complexity agent granted tools that change the workspace.
    LowComplexityWrites = "W1208",
    /// `W1209`: an MCP server declared and never granted.
    UnusedMcpServer = "W1209",
}

impl Code {
    /// Its catalogue entry.
    pub fn info(self) -> &'static super::catalog::CodeInfo {
        super::catalog::entry(self)
    }
    /// Its kebab-case name (`undefined-name`).
    pub fn name(self) -> &'static str {
        self.info().name
    }
    /// The severity it is reported with before lint levels apply.
    pub fn default_severity(self) -> super::Severity {
        self.info().default_severity
    }
    /// Whether it is a lint (a warning whose level can be changed).
    pub fn is_lint(self) -> bool {
        self.info().is_lint()
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl PartialEq<str> for Code {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Code {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<Code> for &str {
    fn eq(&self, other: &Code) -> bool {
        *self == other.as_str()
    }
}
