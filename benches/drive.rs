//! `drive URL SCENARIO`: runs one scenario with the default `Client` against a mock already
//! started with the scenario's flags, and prints one JSON line of figures.
//! `drive --mock-args SCENARIO` prints the mock flags of a scenario.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scenarios = benches::scenarios();
    let find = |name: &str| scenarios.iter().find(|s| s.name == name);
    match args.as_slice() {
        [flag, name] if flag == "--mock-args" => match find(name) {
            Some(s) => {
                println!("{}", s.mock_args.join(" "));
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("unknown scenario {name}");
                ExitCode::from(2)
            }
        },
        [url, name] => match find(name) {
            Some(s) => {
                let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
                let report = rt.block_on(benches::run(url, s));
                let ideal = benches::rate_limited_ideal(s).as_secs_f64();
                let mut json: serde_json::Value =
                    serde_json::from_str(&report.to_json("tower-anthropic", s.name))
                        .expect("the report is JSON");
                json["ideal_s"] = ideal.into();
                json["pacing"] = s.pacing.into();
                println!("{json}");
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("unknown scenario {name}");
                ExitCode::from(2)
            }
        },
        _ => {
            eprintln!("usage: drive URL SCENARIO | drive --mock-args SCENARIO");
            let names: Vec<_> = scenarios.iter().map(|s| s.name).collect();
            eprintln!("scenarios: {}", names.join(", "));
            ExitCode::from(2)
        }
    }
}
