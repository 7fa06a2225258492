//! Named choices: the values of an enum a user picks by name (`--precision bf16`), listed once with
//! their names and help. The library defines them without clap; the command line's parser
//! (`commands::choice` in the binary) lists them in `--help` and parses through `Choice::parse`.

/// An enum whose values have names.
pub trait Choice: Copy + PartialEq + Sized + 'static {
    /// What the values choose, for error messages ("precision").
    const WHAT: &'static str;
    /// Every value, with its name and one line of help.
    const CHOICES: &'static [(Self, &'static str, &'static str)];

    /// The value's name.
    fn name(self) -> &'static str {
        Self::CHOICES.iter().find(|(v, _, _)| *v == self).map_or("?", |&(_, name, _)| name)
    }

    /// The value named `s`, or an error listing the names.
    fn parse(s: &str) -> Result<Self, String> {
        Self::CHOICES.iter().find(|(_, name, _)| *name == s).map(|&(v, _, _)| v).ok_or_else(|| {
            let names: Vec<&str> = Self::CHOICES.iter().map(|&(_, name, _)| name).collect();
            format!("unknown {} {s:?}: expected one of {}", Self::WHAT, names.join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Fruit {
        Apple,
        Pear,
    }
    impl Choice for Fruit {
        const WHAT: &'static str = "fruit";
        const CHOICES: &'static [(Self, &'static str, &'static str)] =
            &[(Fruit::Apple, "apple", "red or green"), (Fruit::Pear, "pear", "yellow")];
    }

    #[test]
    fn names_parse_back_and_unknown_names_list_the_choices() {
        for &(value, name, _) in Fruit::CHOICES {
            assert_eq!(value.name(), name);
            assert_eq!(Fruit::parse(name), Ok(value));
        }
        assert_eq!(Fruit::parse("plum").unwrap_err(), "unknown fruit \"plum\": expected one of apple, pear");
    }
}
