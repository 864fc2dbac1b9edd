//! Semantic versions as a CEL value, with the functions of the Kubernetes CEL semver library
//! (k8s.io/apiserver/pkg/cel/library/semverlib.go): `semver()`, `isSemver()`, `major`, `minor`,
//! `patch`, `compareTo`, `isLessThan`, `isGreaterThan`. Version attributes of devices are
//! exposed as this type, as upstream does.

use std::any::Any;
use std::cmp::Ordering;

use cel::ExecutionError;
use cel::common::traits::Comparer;
use cel::common::types::Type;
use cel::common::value::{StaticVal, Val};

/// A semantic version (semver 2.0.0).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Semver(pub semver::Version);

/// The CEL type of versions, named as in Kubernetes.
pub static SEMVER_TYPE: Type = Type::new_unspecified_type("kubernetes.Semver");

impl Semver {
    /// Parses a strict semantic version such as `1.2.3` or `1.2.3-rc.1`.
    ///
    /// # Errors
    /// The parser's message for a malformed version.
    pub fn parse(s: &str) -> Result<Semver, String> {
        semver::Version::parse(s)
            .map(Semver)
            .map_err(|e| e.to_string())
    }
}

impl Val for Semver {
    fn get_type(&self) -> &Type {
        &SEMVER_TYPE
    }
    fn cel_type() -> &'static Type {
        &SEMVER_TYPE
    }
    fn as_comparer(&self) -> Option<&dyn Comparer> {
        Some(self)
    }
    fn equals(&self, other: &dyn Val) -> bool {
        other.downcast_ref::<Semver>().is_some_and(|o| o == self)
    }
    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
}

impl StaticVal for Semver {}

impl Comparer for Semver {
    fn compare(&self, rhs: &dyn Val) -> Result<Ordering, ExecutionError> {
        match rhs.downcast_ref::<Semver>() {
            Some(other) => Ok(self.cmp(other)),
            None => Err(ExecutionError::UnexpectedType {
                got: rhs.get_type().name().to_owned(),
                want: SEMVER_TYPE.name().to_owned(),
            }),
        }
    }
}

/// The functions of the Kubernetes CEL semver library, for [`crate::cel_env`].
pub(crate) mod functions {
    use cel::ExecutionError;
    use cel::common::types::{CelBool, CelInt, CelString};

    use super::Semver;

    pub fn semver(s: &CelString<'_>) -> Result<Semver, ExecutionError> {
        Semver::parse(s.inner()).map_err(|e| ExecutionError::function_error("semver", e))
    }
    pub fn is_semver(s: &CelString<'_>) -> CelBool {
        CelBool::from(Semver::parse(s.inner()).is_ok())
    }
    pub fn major(v: &Semver) -> CelInt {
        CelInt::from(v.0.major as i64)
    }
    pub fn minor(v: &Semver) -> CelInt {
        CelInt::from(v.0.minor as i64)
    }
    pub fn patch(v: &Semver) -> CelInt {
        CelInt::from(v.0.patch as i64)
    }
    pub fn compare_to(a: &Semver, b: &Semver) -> CelInt {
        CelInt::from(a.cmp(b) as i64)
    }
    pub fn is_less_than(a: &Semver, b: &Semver) -> CelBool {
        CelBool::from(a < b)
    }
    pub fn is_greater_than(a: &Semver, b: &Semver) -> CelBool {
        CelBool::from(a > b)
    }
}
