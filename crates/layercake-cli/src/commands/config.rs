//! `layercake config`: the configuration read from the environment, redacted.

use serde_json::{Map, Value};

use crate::cli::Cli;
use crate::ctx::load_config;
use crate::exit::{OK, Outcome};
use crate::output;

pub(crate) fn run(cli: &Cli) -> Outcome {
    let c = load_config(cli)?;
    if cli.json {
        let map: Map<String, Value> = c
            .summary()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value::String(v)))
            .collect();
        output::print_json(&Value::Object(map));
    } else {
        print!("{c}");
    }
    Ok(OK)
}
