//! A tenant's template source and a guest's variables, as a send renders
//! them: the safe-subset check and rendering never panic, and what renders
//! keeps the header and length invariants.
#![no_main]

use arbitrary::Arbitrary;
use delta_templates::fuzzing::{check_rendered, render};
use delta_templates::{ChannelId, TemplateConfig};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    sms: bool,
    html: bool,
    subject: String,
    body: String,
    declared: Vec<String>,
    variables: Vec<(String, String)>,
}

fuzz_target!(|input: Input| {
    let channel = if input.sms {
        ChannelId::Sms
    } else {
        ChannelId::Email
    };
    let template = TemplateConfig {
        id: "t".into(),
        channel,
        subject: (!input.sms).then_some(input.subject),
        body: input.body,
        html: input.html && !input.sms,
        variables: input.declared,
        max_variable_len: 64,
        max_lengths: Default::default(),
        approved: true,
    };
    let _ = delta_templates::check_safe_subset(&template.body);
    if let Some(Ok((subject, body))) = render(&template, &input.variables)
        && let Err(broken) = check_rendered(channel, subject.as_deref(), &body)
    {
        panic!("{broken}: {subject:?} / {body:?}");
    }
});
