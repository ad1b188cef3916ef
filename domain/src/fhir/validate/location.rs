//! Where a value sits in the resource, as the FHIRPath an issue reports (JSON names:
//! `Patient.name[0].given[1]`, `Observation.valueQuantity`).
//!
//! The walks build a location for every value they visit but report only a few, so a location
//! is a chain of borrowed segments on the stack, written out as text only for an issue.

use std::fmt;

#[derive(Debug, Clone, Copy)]
pub(super) enum Location<'a> {
    /// The start: a resource type, or a location already written out.
    Root(&'a str),
    /// `parent.key`, or `parent.key[index]` for an item of an array.
    Member {
        parent: &'a Location<'a>,
        key: &'a str,
        index: Option<usize>,
    },
    /// `parent[index]`: an item of an array that is itself an item (not valid FHIR, but JSON).
    Item {
        parent: &'a Location<'a>,
        index: usize,
    },
}

impl<'a> Location<'a> {
    /// `self.key`
    pub(super) fn key(&'a self, key: &'a str) -> Location<'a> {
        Location::Member {
            parent: self,
            key,
            index: None,
        }
    }

    /// `self.key[index]`, or `self.key` without an index.
    pub(super) fn member(&'a self, key: &'a str, index: Option<usize>) -> Location<'a> {
        Location::Member {
            parent: self,
            key,
            index,
        }
    }

    /// `self[index]`: an item of the array at this location.
    pub(super) fn item(&'a self, index: usize) -> Location<'a> {
        match *self {
            Location::Member {
                parent,
                key,
                index: None,
            } => Location::Member {
                parent,
                key,
                index: Some(index),
            },
            _ => Location::Item {
                parent: self,
                index,
            },
        }
    }
}

impl fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Root(text) => f.write_str(text),
            Location::Member { parent, key, index } => {
                parent.fmt(f)?;
                write!(f, ".{key}")?;
                match index {
                    Some(i) => write!(f, "[{i}]"),
                    None => Ok(()),
                }
            }
            Location::Item { parent, index } => {
                parent.fmt(f)?;
                write!(f, "[{index}]")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_read_as_fhirpath() {
        let root = Location::Root("Patient");
        let name = root.member("name", Some(0));
        let given = name.key("given");
        assert_eq!(given.item(1).to_string(), "Patient.name[0].given[1]");
        assert_eq!(name.item(2).to_string(), "Patient.name[0][2]");
        assert_eq!(root.to_string(), "Patient");
    }
}
