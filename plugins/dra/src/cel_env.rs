//! CEL device selectors: the environment (the `device` variable, the Kubernetes quantity and
//! semver libraries, the strings extension), a compile cache keyed by expression, and an
//! evaluation cache keyed by (expression, device).
//!
//! The `device` variable is shaped as upstream
//! (k8s.io/dynamic-resource-allocation/cel/compile.go):
//! - `device.driver`: the driver name;
//! - `device.attributes["<domain>"].<name>`: string, int, bool or version (semver) values;
//!   attribute names without a domain belong to the driver's domain;
//! - `device.capacity["<domain>"].<name>`: quantities;
//! - `device.allowMultipleAllocations`: whether the device can be shared by several
//!   allocations (KEP-5075; false when the slice leaves it unset).
//!
//! As upstream, looking up an unknown domain gives an empty map, and an unknown name in a domain
//! is a runtime error ("no such key"); `has(...)` and `in` test for presence without error.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use cel::common::traits::{Container, Indexer};
use cel::common::types::{CelBool, CelInt, CelMap, CelMapKey, CelString, MAP_TYPE, Type};
use cel::common::value::{CowVal, StaticVal, Val};
use cel::{Context, Env, ExecutionError, Program, Value};
use k8s_openapi::api::resource::v1::{DeviceAttribute, DeviceCapacity};

use crate::cel_quantity::{self, CelQuantity};
use crate::semver_val::{self, Semver};
use kube_quantity::Quantity;

/// A device as the CEL `device` variable sees it, built once per device when its ResourceSlice
/// changes.
#[derive(Debug)]
pub struct CelDevice {
    driver: CelString<'static>,
    attributes: DomainMap,
    capacity: DomainMap,
    allow_multiple_allocations: CelBool,
}

impl CelDevice {
    /// Builds the CEL view of a device of `driver` from its attributes and capacity.
    ///
    /// # Errors
    /// A message naming an attribute whose value cannot be represented (e.g. a malformed
    /// version); upstream refuses to evaluate selectors on such a device too.
    pub fn new(
        driver: &str,
        attributes: Option<&BTreeMap<String, DeviceAttribute>>,
        capacity: Option<&BTreeMap<String, DeviceCapacity>>,
    ) -> Result<CelDevice, String> {
        let mut attrs: BTreeMap<String, HashMap<CelMapKey<'static>, Box<dyn Val>>> =
            BTreeMap::new();
        for (name, attr) in attributes.into_iter().flatten() {
            let (domain, id) = split_qualified_name(name, driver);
            let value: Box<dyn Val> = if let Some(v) = attr.int {
                Box::new(CelInt::from(v))
            } else if let Some(v) = attr.bool {
                Box::new(CelBool::from(v))
            } else if let Some(v) = &attr.string {
                Box::new(CelString::from(v.clone()))
            } else if let Some(v) = &attr.version {
                Box::new(
                    Semver::parse(v)
                        .map_err(|e| format!("attribute {name}: parse semantic version: {e}"))?,
                )
            } else {
                return Err(format!("attribute {name}: unsupported attribute value"));
            };
            attrs
                .entry(domain.to_owned())
                .or_default()
                .insert(CelMapKey::from(id.to_owned()), value);
        }
        let mut caps: BTreeMap<String, HashMap<CelMapKey<'static>, Box<dyn Val>>> = BTreeMap::new();
        for (name, cap) in capacity.into_iter().flatten() {
            let (domain, id) = split_qualified_name(name, driver);
            let q = Quantity::parse_json(&cap.value.0)
                .map(CelQuantity)
                .map_err(|e| format!("capacity {name}: {e}"))?;
            caps.entry(domain.to_owned())
                .or_default()
                .insert(CelMapKey::from(id.to_owned()), Box::new(q));
        }
        Ok(CelDevice {
            driver: CelString::from(driver.to_owned()),
            attributes: DomainMap::new(attrs),
            capacity: DomainMap::new(caps),
            allow_multiple_allocations: CelBool::from(false),
        })
    }

    /// Sets `device.allowMultipleAllocations` (the device's `allowMultipleAllocations`).
    pub fn with_multiple_allocations(mut self, allowed: bool) -> CelDevice {
        self.allow_multiple_allocations = CelBool::from(allowed);
        self
    }
}

/// Splits `domain/name`; a name without a domain is in `default_domain` (the driver's).
pub fn split_qualified_name<'a>(name: &'a str, default_domain: &'a str) -> (&'a str, &'a str) {
    match name.split_once('/') {
        Some((domain, id)) => (domain, id),
        None => (default_domain, name),
    }
}

/// `device.attributes` / `device.capacity`: domain → map of name → value; an unknown domain
/// gives an empty map (upstream `newStringInterfaceMapWithDefault`).
#[derive(Debug, Clone)]
struct DomainMap {
    domains: CelMap<'static>,
    empty: CelMap<'static>,
}

impl DomainMap {
    fn new(domains: BTreeMap<String, HashMap<CelMapKey<'static>, Box<dyn Val>>>) -> DomainMap {
        let domains: HashMap<CelMapKey<'static>, Box<dyn Val>> = domains
            .into_iter()
            .map(|(d, m)| {
                (
                    CelMapKey::from(d),
                    Box::new(CelMap::from(m)) as Box<dyn Val>,
                )
            })
            .collect();
        DomainMap {
            domains: CelMap::from(domains),
            empty: CelMap::default(),
        }
    }
}

impl Val for DomainMap {
    fn get_type(&self) -> &Type {
        &MAP_TYPE
    }
    fn cel_type() -> &'static Type {
        &MAP_TYPE
    }
    fn as_container(&self) -> Option<&dyn Container> {
        self.domains.as_container()
    }
    fn as_indexer<'b, 'v>(&'b self) -> Option<&'b (dyn Indexer + 'v)>
    where
        Self: 'v,
    {
        Some(self)
    }
    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
}

impl StaticVal for DomainMap {}

impl Indexer for DomainMap {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        match self.domains.get(idx) {
            Err(ExecutionError::NoSuchKey(_)) => Ok(CowVal::Borrowed(&self.empty)),
            other => other,
        }
    }
    fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        self.get(idx).map(CowVal::into_owned)
    }
}

/// The CEL type of the `device` variable, named as upstream.
static DEVICE_TYPE: Type = Type::new_unspecified_type("kubernetes.DRADevice");

/// The `device` variable: borrows a [`CelDevice`] for one evaluation, so nothing is copied.
#[derive(Debug, Clone, Copy)]
struct DeviceRef<'a>(&'a CelDevice);

impl Val for DeviceRef<'_> {
    fn get_type(&self) -> &Type {
        &DEVICE_TYPE
    }
    fn cel_type() -> &'static Type
    where
        Self: Sized,
    {
        &DEVICE_TYPE
    }
    fn as_indexer<'b, 'v>(&'b self) -> Option<&'b (dyn Indexer + 'v)>
    where
        Self: 'v,
    {
        Some(self)
    }
    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v>
    where
        Self: 'v,
    {
        Box::new(*self)
    }
}

impl Indexer for DeviceRef<'_> {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        let device = self.0;
        match idx.downcast_ref::<CelString>().map(CelString::inner) {
            Some("driver") => Ok(CowVal::Borrowed(&device.driver)),
            Some("attributes") => Ok(CowVal::Borrowed(&device.attributes)),
            Some("capacity") => Ok(CowVal::Borrowed(&device.capacity)),
            Some("allowMultipleAllocations") => {
                Ok(CowVal::Borrowed(&device.allow_multiple_allocations))
            }
            Some(other) => Err(ExecutionError::no_such_key(other)),
            None => Err(ExecutionError::UnexpectedType {
                got: idx.get_type().name().to_owned(),
                want: "string".to_owned(),
            }),
        }
    }
    fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        self.get(idx).map(CowVal::into_owned)
    }
}

/// A compiled selector's handle in a [`Selectors`] cache.
pub type SelectorId = u32;

/// Compiles and evaluates device selectors, caching both.
///
/// Compilation is cached by expression for the plugin's lifetime. Results are cached by
/// (selector, device index) until [`Selectors::clear_results`] is called, which the plugin does
/// whenever ResourceSlices change (device indices are reassigned then). The result cache is
/// dense (one byte per selector and device), so a Filter over many nodes looks results up by
/// index instead of hashing.
pub struct Selectors {
    env: Arc<Env>,
    programs: Vec<Program>,
    by_expr: HashMap<String, Result<SelectorId, String>>,
    /// Per selector, per device index: [`UNKNOWN`], [`MATCH`], [`NO_MATCH`] or [`FAILED`].
    results: Vec<Vec<u8>>,
    /// Runtime errors of results marked [`FAILED`].
    errors: HashMap<(SelectorId, u32), String>,
}

const UNKNOWN: u8 = 0;
const MATCH: u8 = 1;
const NO_MATCH: u8 = 2;
const FAILED: u8 = 3;

impl Default for Selectors {
    fn default() -> Self {
        Selectors::new()
    }
}

impl Selectors {
    /// A cache with the Kubernetes DRA CEL environment.
    pub fn new() -> Selectors {
        Selectors {
            env: Arc::new(build_env()),
            programs: Vec::new(),
            by_expr: HashMap::new(),
            results: Vec::new(),
            errors: HashMap::new(),
        }
    }

    /// Compiles `expr` once.
    ///
    /// # Errors
    /// The compiler's message, prefixed like upstream ("compilation failed: ...").
    pub fn compile(&mut self, expr: &str) -> Result<SelectorId, String> {
        if let Some(r) = self.by_expr.get(expr) {
            return r.clone();
        }
        let r = match self.env.compile(expr) {
            Ok(p) => {
                self.programs.push(p);
                Ok((self.programs.len() - 1) as SelectorId)
            }
            Err(e) => Err(format!("compilation failed: {e}")),
        };
        self.by_expr.insert(expr.to_owned(), r.clone());
        r
    }

    /// Evaluates a compiled selector on a device (`device_index` keys the result cache).
    ///
    /// # Errors
    /// A runtime error ("CEL runtime error: no such key: model") or a non-bool result.
    pub fn matches(
        &mut self,
        id: SelectorId,
        device_index: u32,
        device: &CelDevice,
    ) -> Result<bool, String> {
        let (id_us, idx) = (id as usize, device_index as usize);
        if self.results.len() <= id_us {
            self.results.resize_with(id_us + 1, Vec::new);
        }
        match self.results[id_us].get(idx).copied().unwrap_or(UNKNOWN) {
            MATCH => return Ok(true),
            NO_MATCH => return Ok(false),
            FAILED => {
                if let Some(e) = self.errors.get(&(id, device_index)) {
                    return Err(e.clone());
                }
            }
            _ => {}
        }
        let r = eval(&self.env, &self.programs[id_us], device);
        let row = &mut self.results[id_us];
        if row.len() <= idx {
            row.resize(idx + 1, UNKNOWN);
        }
        row[idx] = match &r {
            Ok(true) => MATCH,
            Ok(false) => NO_MATCH,
            Err(e) => {
                self.errors.insert((id, device_index), e.clone());
                FAILED
            }
        };
        r
    }

    /// Number of cached results (for tests).
    #[cfg(test)]
    fn cached(&self) -> usize {
        self.results
            .iter()
            .map(|r| r.iter().filter(|&&v| v != UNKNOWN).count())
            .sum()
    }

    /// Forgets cached results (device indices changed).
    pub fn clear_results(&mut self) {
        self.results.clear();
        self.errors.clear();
    }
}

fn eval(env: &Arc<Env>, program: &Program, device: &CelDevice) -> Result<bool, String> {
    let mut ctx = Context::with_env(env.clone());
    ctx.add_variable_as_val("device", Box::new(DeviceRef(device)));
    match program.execute(&ctx) {
        Ok(Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!(
            "CEL result of type {} could not be converted to bool",
            other.type_of()
        )),
        Err(e) => Err(format!("CEL runtime error: {e}")),
    }
}

/// The environment: the CEL standard library, the strings extension, and the Kubernetes
/// quantity and semver libraries.
fn build_env() -> Env {
    use cel_quantity::functions::{
        add as quantity_add, add_int as quantity_add_int, as_approximate_float, as_integer,
        compare_to as quantity_compare_to, is_greater_than as quantity_is_greater_than, is_integer,
        is_less_than as quantity_is_less_than, is_quantity, quantity, sign, sub as quantity_sub,
        sub_int as quantity_sub_int,
    };
    use semver_val::functions::{
        compare_to as semver_compare_to, is_greater_than as semver_is_greater_than,
        is_less_than as semver_is_less_than, is_semver, major, minor, patch, semver,
    };
    fn register(env: &mut Env) -> Result<(), cel::DeclarationError> {
        env.add_extension(cel::extensions::strings)?;
        cel::add_overload!(env, fn quantity: (CelString) -> Result<CelQuantity>)?;
        cel::add_overload!(env, fn is_quantity: (CelString) -> CelBool)?;
        cel::add_member_overload!(env, fn quantity_compare_to: (CelQuantity, CelQuantity) -> CelInt, name = "compareTo")?;
        cel::add_member_overload!(env, fn quantity_is_less_than: (CelQuantity, CelQuantity) -> CelBool, name = "isLessThan")?;
        cel::add_member_overload!(env, fn quantity_is_greater_than: (CelQuantity, CelQuantity) -> CelBool, name = "isGreaterThan")?;
        cel::add_member_overload!(env, fn quantity_add: (CelQuantity, CelQuantity) -> Result<CelQuantity>, name = "add")?;
        cel::add_member_overload!(env, fn quantity_add_int: (CelQuantity, CelInt) -> Result<CelQuantity>, name = "add")?;
        cel::add_member_overload!(env, fn quantity_sub: (CelQuantity, CelQuantity) -> Result<CelQuantity>, name = "sub")?;
        cel::add_member_overload!(env, fn quantity_sub_int: (CelQuantity, CelInt) -> Result<CelQuantity>, name = "sub")?;
        cel::add_member_overload!(env, fn sign: (CelQuantity) -> CelInt)?;
        cel::add_member_overload!(env, fn is_integer: (CelQuantity) -> CelBool)?;
        cel::add_member_overload!(env, fn as_integer: (CelQuantity) -> Result<CelInt>)?;
        cel::add_member_overload!(env, fn as_approximate_float: (CelQuantity) -> cel::common::types::CelDouble)?;
        cel::add_overload!(env, fn semver: (CelString) -> Result<Semver>)?;
        cel::add_overload!(env, fn is_semver: (CelString) -> CelBool)?;
        cel::add_member_overload!(env, fn major: (Semver) -> CelInt)?;
        cel::add_member_overload!(env, fn minor: (Semver) -> CelInt)?;
        cel::add_member_overload!(env, fn patch: (Semver) -> CelInt)?;
        cel::add_member_overload!(env, fn semver_compare_to: (Semver, Semver) -> CelInt, name = "compareTo")?;
        cel::add_member_overload!(env, fn semver_is_less_than: (Semver, Semver) -> CelBool, name = "isLessThan")?;
        cel::add_member_overload!(env, fn semver_is_greater_than: (Semver, Semver) -> CelBool, name = "isGreaterThan")?;
        Ok(())
    }
    let mut env = Env::stdlib();
    // The registrations are static; a failure is a programming error caught by the unit tests.
    register(&mut env).expect("DRA CEL environment");
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;

    fn gpu() -> CelDevice {
        let attrs: BTreeMap<String, DeviceAttribute> = [
            (
                "model",
                DeviceAttribute {
                    string: Some("LATEST-GPU-MODEL".into()),
                    ..Default::default()
                },
            ),
            (
                "index",
                DeviceAttribute {
                    int: Some(1),
                    ..Default::default()
                },
            ),
            (
                "gpu.example.com/migCapable",
                DeviceAttribute {
                    bool: Some(true),
                    ..Default::default()
                },
            ),
            (
                "driverVersion",
                DeviceAttribute {
                    version: Some("1.2.3".into()),
                    ..Default::default()
                },
            ),
            (
                "numa.example.com/node",
                DeviceAttribute {
                    int: Some(0),
                    ..Default::default()
                },
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let caps: BTreeMap<String, DeviceCapacity> = [("memory", "80Gi"), ("cores", "1")]
            .into_iter()
            .map(|(k, v)| {
                (
                    k.to_owned(),
                    DeviceCapacity {
                        value: K8sQuantity(v.into()),
                        request_policy: None,
                    },
                )
            })
            .collect();
        CelDevice::new("gpu.example.com", Some(&attrs), Some(&caps)).unwrap()
    }

    fn check(expr: &str) -> Result<bool, String> {
        let mut s = Selectors::new();
        let id = s.compile(expr)?;
        s.matches(id, 0, &gpu())
    }

    #[test]
    fn timestamps_and_durations_are_left_out_and_fail_as_an_error() {
        // Built without cel's `chrono` feature (see the workspace Cargo.toml): an error, so the
        // device does not match, never a silent true.
        for expr in [
            r#"timestamp("2026-01-01T00:00:00Z") < timestamp("2027-01-01T00:00:00Z")"#,
            r#"duration("1h") > duration("1m")"#,
        ] {
            assert!(check(expr).is_err(), "{expr}: {:?}", check(expr));
        }
    }

    #[test]
    fn works_for_driver_and_typed_attributes() {
        assert_eq!(check(r#"device.driver == "gpu.example.com""#), Ok(true));
        assert_eq!(
            check(r#"device.attributes["gpu.example.com"].model == "LATEST-GPU-MODEL""#),
            Ok(true)
        );
        assert_eq!(
            check(r#"device.attributes["gpu.example.com"].index > 0"#),
            Ok(true)
        );
        assert_eq!(
            check(r#"device.attributes["gpu.example.com"].migCapable"#),
            Ok(true)
        );
        assert_eq!(
            check(r#"device.attributes["numa.example.com"].node == 0"#),
            Ok(true)
        );
        assert_eq!(
            check(
                r#"device.attributes["gpu.example.com"].model.startsWith("LATEST") && device.attributes["gpu.example.com"].model.lowerAscii() == "latest-gpu-model""#
            ),
            Ok(true)
        );
    }

    #[test]
    fn works_for_allow_multiple_allocations() {
        let mut s = Selectors::new();
        let id = s
            .compile("device.allowMultipleAllocations == true")
            .unwrap();
        assert_eq!(s.matches(id, 0, &gpu()), Ok(false), "unset is false");
        let shared = gpu().with_multiple_allocations(true);
        assert_eq!(s.matches(id, 1, &shared), Ok(true));
        let not = s.compile("!device.allowMultipleAllocations").unwrap();
        assert_eq!(s.matches(not, 1, &shared), Ok(false));
    }

    #[test]
    fn works_for_capacity_as_quantities() {
        assert_eq!(
            check(r#"device.capacity["gpu.example.com"].memory.compareTo(quantity("40Gi")) >= 0"#),
            Ok(true)
        );
        assert_eq!(
            check(r#"device.capacity["gpu.example.com"].memory.isGreaterThan(quantity("100Gi"))"#),
            Ok(false)
        );
        assert_eq!(
            check(r#"device.capacity["gpu.example.com"].memory.isLessThan(quantity("81Gi"))"#),
            Ok(true)
        );
        assert_eq!(
            check(r#"device.capacity["gpu.example.com"].cores.asInteger() == 1"#),
            Ok(true)
        );
        assert_eq!(
            check(r#"device.capacity["gpu.example.com"].memory.asApproximateFloat() > 1e9"#),
            Ok(true)
        );
        assert_eq!(
            check(r#"device.capacity["gpu.example.com"].memory == quantity("80Gi")"#),
            Ok(true)
        );
        assert_eq!(
            check(
                r#"device.capacity["gpu.example.com"].memory.add(quantity("1Gi")).isGreaterThan(quantity("80Gi"))"#
            ),
            Ok(true)
        );
        assert_eq!(
            check(r#"isQuantity("1Gi") && !isQuantity("1GB")"#),
            Ok(true)
        );
    }

    #[test]
    fn works_for_versions_as_semver() {
        assert_eq!(
            check(
                r#"device.attributes["gpu.example.com"].driverVersion.isGreaterThan(semver("1.0.0"))"#
            ),
            Ok(true)
        );
        assert_eq!(
            check(
                r#"device.attributes["gpu.example.com"].driverVersion.compareTo(semver("1.2.3")) == 0"#
            ),
            Ok(true)
        );
        assert_eq!(
            check(r#"device.attributes["gpu.example.com"].driverVersion.major() == 1"#),
            Ok(true)
        );
        assert_eq!(
            check(r#"device.attributes["gpu.example.com"].driverVersion == semver("1.2.3")"#),
            Ok(true)
        );
    }

    #[test]
    fn unknown_domain_is_an_empty_map_and_unknown_name_an_error() {
        assert_eq!(
            check(r#""model" in device.attributes["other.example.com"]"#),
            Ok(false)
        );
        assert_eq!(
            check(r#"has(device.attributes["gpu.example.com"].nope)"#),
            Ok(false)
        );
        assert_eq!(
            check(r#""model" in device.attributes["gpu.example.com"]"#),
            Ok(true)
        );
        let err = check(r#"device.attributes["gpu.example.com"].nope == "x""#).unwrap_err();
        assert!(
            err.contains("CEL runtime error") && err.contains("nope"),
            "{err}"
        );
    }

    #[test]
    fn errors_on_bad_expressions_and_non_bool_results() {
        assert!(
            check("device.driver ==")
                .unwrap_err()
                .starts_with("compilation failed")
        );
        assert!(
            check("device.driver")
                .unwrap_err()
                .contains("could not be converted to bool")
        );
    }

    #[test]
    fn caches_results_per_selector_and_device() {
        let mut s = Selectors::new();
        let a = s.compile(r#"device.driver == "gpu.example.com""#).unwrap();
        let b = s.compile(r#"device.driver == "gpu.example.com""#).unwrap();
        assert_eq!(a, b);
        let d = gpu();
        assert_eq!(s.matches(a, 7, &d), Ok(true));
        assert_eq!(s.cached(), 1);
        assert_eq!(s.matches(a, 7, &d), Ok(true));
        assert_eq!(s.cached(), 1);
    }
}
