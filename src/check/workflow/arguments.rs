//! A step's arguments against its agent's parameters: the prompt, named arguments, what is
//! missing or given twice (`E0211`).

use super::*;

impl Lowerer<'_> {
    /// Splits the call's arguments into the prompt and named arguments, checking them against
    /// the agent's parameters.
    pub(super) fn arguments(
        &mut self,
        s: &ast::Step,
        agent_name: &str,
    ) -> (
        Option<Template>,
        IndexMap<String, Template>,
        IndexMap<String, Span>,
    ) {
        let agent = self.tables.agents.get(agent_name);
        let mut prompt = None;
        let mut args = IndexMap::new();
        // Where each named argument was first given.
        let mut given: IndexMap<String, Span> = IndexMap::new();
        // Where each accepted named argument's value is written.
        let mut value_spans: IndexMap<String, Span> = IndexMap::new();
        // Parameters that a misspelled argument was probably meant for.
        let mut meant: Vec<String> = Vec::new();
        for a in &s.args {
            let t = value_template(&a.value);
            match &a.name {
                None if prompt.is_none() => prompt = Some(t),
                None => self
                    .diags
                    .push(InvalidArguments::SecondPrompt { at: a.value.span }.into()),
                // `agent(prompt: "...")`: the prompt written as a named argument. Taken as the
                // prompt, so this is the only error instead of "no prompt" plus "no parameter".
                Some(n)
                    if n.name == "prompt"
                        && prompt.is_none()
                        && !s.args.iter().any(|a| a.name.is_none())
                        && agent
                            .is_some_and(|ag| !ag.params.iter().any(|p| p.name == "prompt")) =>
                {
                    self.diags.push(
                        InvalidArguments::PromptByName {
                            at: n.span,
                            agent: agent_name.to_string(),
                        }
                        .into(),
                    );
                    prompt = Some(t);
                }
                Some(n) => {
                    if let Some(agent) = agent
                        && !agent.params.iter().any(|p| p.name == n.name)
                    {
                        let params: Vec<&str> =
                            agent.params.iter().map(|p| p.name.as_str()).collect();
                        let suggestion = did_you_mean(&n.name, params.iter().copied());
                        if let Some(x) = suggestion {
                            meant.push(x.to_string());
                        }
                        self.diags.push(
                            InvalidArguments::NoSuchParameter {
                                at: n.span,
                                agent: agent_name.to_string(),
                                name: n.name.clone(),
                                declared: agent.name_span,
                                suggestion: suggestion.map(String::from),
                                params: params.iter().map(|p| p.to_string()).collect(),
                            }
                            .into(),
                        );
                    } else if let Some(first) = given.get(&n.name) {
                        self.diags.push(
                            InvalidArguments::GivenTwice {
                                at: n.span,
                                name: n.name.clone(),
                                first: Some(*first),
                            }
                            .into(),
                        );
                    } else {
                        given.insert(n.name.clone(), n.span);
                        value_spans.insert(n.name.clone(), a.value.span);
                        args.insert(n.name.clone(), t);
                    }
                }
            }
        }
        if let Some(agent) = agent {
            let missing: Vec<&str> = agent
                .params
                .iter()
                .filter(|p| {
                    p.default.is_none() && !args.contains_key(&p.name) && !meant.contains(&p.name)
                })
                .map(|p| p.name.as_str())
                .collect();
            if !missing.is_empty() {
                self.diags.push(
                    InvalidArguments::MissingArguments {
                        at: s.callee.span,
                        agent: agent_name.to_string(),
                        declared: agent.name_span,
                        missing: missing.iter().map(|m| m.to_string()).collect(),
                        with_prompt: prompt.is_some(),
                        command: matches!(agent.kind, AgentKind::Command { .. }),
                    }
                    .into(),
                );
            }
            if prompt.is_none() && matches!(agent.kind, AgentKind::Model { .. }) {
                self.diags.push(
                    InvalidArguments::NoPrompt {
                        at: s.callee.span,
                        step: s.name.name.clone(),
                        agent: agent_name.to_string(),
                    }
                    .into(),
                );
            }
        }
        (prompt, args, value_spans)
    }
}
