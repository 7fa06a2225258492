//! The test harness of the files whose tests need a GPU or a library that a machine may not have
//! (`tests/cuda.rs`, `tests/kernels_compile.rs`; Cargo.toml gives their targets `harness = false`).
//! It is libtest-mimic, which takes `cargo test`'s arguments and prints its lines, but decides when the
//! tests run whether each one can: a test whose GPU or library is absent is reported as *ignored*,
//! with the reason (`test name ... ignored, no usable GPU: ...`), and counted among the ignored in the
//! summary line, rather than passing without having run. With the file's variable set to 1
//! (`GPT_REQUIRE_CUDA=1`, `GPT_REQUIRE_NVRTC=1`) nothing is ignored for an absence: each such test fails, naming it.
//!
//! Such a file lists its tests in its `fn main` (`#[test]` functions are compiled only under the
//! built-in harness, so a `#[test]` left in the file would silently never run: the harness's own
//! test `harness::every_test_of_the_file_is_listed` fails on one).

use libtest_mimic::{Arguments, Completion, Failed, Trial};

/// What a test needs of the machine it runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    /// Nothing: it always runs.
    Nothing,
    /// The GPU or library its file is about.
    It,
    /// Its absence (a test of what the program does without it).
    ItsAbsence,
}

/// One test of the file: its function's name, the function, and what it needs.
pub struct Test {
    pub name: &'static str,
    pub run: fn(),
    pub needs: Needs,
}

/// `tests![needs => [f, g, ...]; ...]`: the `Test`s of the functions named, with what they need.
macro_rules! tests {
    ($($needs:expr => [$($name:ident),* $(,)?]);* $(;)?) => {
        vec![$($($crate::harness::Test { name: stringify!($name), run: $name, needs: $needs },)*)*]
    };
}
pub(crate) use tests;

/// What the file's tests need, looked for once before they run.
pub struct Requirement {
    /// What it is, for the reason a test that needs its absence is ignored ("a usable GPU").
    pub what: &'static str,
    /// `Err(why)` when it is absent.
    pub present: Result<(), String>,
    /// The variable that, set to 1, makes its absence a failure: `GPT_REQUIRE_CUDA`.
    pub require_var: &'static str,
}

/// What becomes of a test: it runs, it is ignored (with the reason), or it fails at once.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Run,
    Ignore(String),
    Fail(String),
}

/// Whether a test that `needs` this runs here, given whether the thing is `present` and whether its
/// variable `required` it.
pub fn decide(needs: Needs, requirement: &Requirement, required: bool) -> Decision {
    match (needs, &requirement.present) {
        (Needs::Nothing, _) | (Needs::It, Ok(())) | (Needs::ItsAbsence, Err(_)) => Decision::Run,
        (Needs::It, Err(why)) if required => Decision::Fail(format!("{}=1 but {why}", requirement.require_var)),
        (Needs::It, Err(why)) => Decision::Ignore(why.clone()),
        (Needs::ItsAbsence, Ok(())) => {
            Decision::Ignore(format!("a test of what happens without {}, and this machine has one", requirement.what))
        }
    }
}

/// Runs the file's `tests` (filtered by the command line as `cargo test` filters) and exits with
/// `cargo test`'s status. `source` is the file's own text (`include_str!`), checked for a `#[test]`.
pub fn run(source: &'static str, requirement: Requirement, tests: Vec<Test>) -> ! {
    let args = Arguments::from_args();
    let required = std::env::var(requirement.require_var).is_ok_and(|v| v == "1");
    let mut trials: Vec<Trial> = tests
        .into_iter()
        .map(|test| {
            let decision = decide(test.needs, &requirement, required);
            Trial::ignorable_test(test.name, move || match decision {
                Decision::Run => {
                    (test.run)();
                    Ok(Completion::Completed)
                }
                Decision::Ignore(why) => Ok(Completion::ignored_with(why)),
                Decision::Fail(why) => Err(Failed::from(why)),
            })
        })
        .collect();
    trials.push(Trial::test("harness::every_test_of_the_file_is_listed", move || {
        let stray: Vec<String> = source
            .lines()
            .enumerate()
            .filter(|(_, line)| line.trim_start().starts_with("#[test]"))
            .map(|(i, _)| format!("line {}", i + 1))
            .collect();
        if stray.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "#[test] at {}: this file's harness (tests/common/harness.rs) never runs a #[test] function; \
                 list it in the file's fn main instead",
                stray.join(", ")
            )
            .into())
        }
    }));
    trials.push(Trial::test("harness::an_absence_is_ignored_with_its_reason_unless_required", || {
        let present = Requirement { what: "a thing", present: Ok(()), require_var: "NEED_THING" };
        let absent = Requirement { present: Err("no thing here".into()), ..present };
        let cases = [
            (Needs::It, &absent, false, Decision::Ignore("no thing here".into())),
            (Needs::It, &absent, true, Decision::Fail("NEED_THING=1 but no thing here".into())),
            (Needs::It, &present, false, Decision::Run),
            (Needs::It, &present, true, Decision::Run),
            (Needs::Nothing, &absent, false, Decision::Run),
            (Needs::ItsAbsence, &absent, true, Decision::Run),
            (
                Needs::ItsAbsence,
                &present,
                false,
                Decision::Ignore("a test of what happens without a thing, and this machine has one".into()),
            ),
        ];
        for (needs, requirement, required, want) in cases {
            let got = decide(needs, requirement, required);
            if got != want {
                return Err(format!(
                    "{needs:?}, present {:?}, required {required}: {got:?}, want {want:?}",
                    requirement.present
                )
                .into());
            }
        }
        Ok(())
    }));
    libtest_mimic::run(&args, trials).exit()
}
