//! Base FHIR R4 structure: resource type, element names, cardinality, JSON shapes, data types,
//! choice types, primitive extensions (`_birthDate`), references, contained resources, extensions.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::location::Location;
use super::{binding, primitive, Issue, IssueCode, ValidationOptions};
use crate::fhir::definitions::{definitions, Definitions, ElementDef, TypeDef, TypeKind, TypeRef};
use crate::fhir::invariants;

/// Deeper than any real resource; a guard so hostile input cannot make the walk expensive.
const MAX_DEPTH: usize = 64;

/// Checks the base rules; returns the resource type when the input is a known resource at all.
pub(super) fn check_resource<'v>(
    resource: &'v Value,
    options: ValidationOptions,
    issues: &mut Vec<Issue>,
) -> Option<&'v str> {
    let mut walker = Walker {
        defs: definitions(),
        issues,
        contained_ids: Vec::new(),
        resources: Vec::new(),
        options,
    };
    walker.resource(resource, None, 0, Position::Root)
}

/// Where a resource sits: its checks differ (dom-2/4/5 apply to contained resources only).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Position {
    Root,
    Contained,
    /// Bundle.entry.resource, Parameters.parameter.resource...
    Inline,
}

struct Walker<'i, 'v> {
    defs: &'static Definitions,
    issues: &'i mut Vec<Issue>,
    /// Ids of the contained resources of each enclosing resource, for `#id` references.
    contained_ids: Vec<HashSet<String>>,
    /// (%resource, %rootResource) of each enclosing resource, for invariants.
    resources: Vec<(&'v Value, &'v Value)>,
    options: ValidationOptions,
}

impl<'v> Walker<'_, 'v> {
    fn push(&mut self, code: IssueCode, expr: impl Into<String>, message: impl Into<String>) {
        self.issues.push(Issue::error(code, expr, message));
    }

    /// `at` is the location of the resource (None at the root: the type name is the location).
    fn resource(
        &mut self,
        value: &'v Value,
        at: Option<&Location<'_>>,
        depth: usize,
        position: Position,
    ) -> Option<&'v str> {
        let here = || at.map(ToString::to_string).unwrap_or_default();
        let Value::Object(obj) = value else {
            self.push(
                IssueCode::Invalid,
                here(),
                format!(
                    "A resource must be a JSON object, found {}",
                    primitive::json_kind(value)
                ),
            );
            return None;
        };
        let Some(rt) = obj.get("resourceType") else {
            self.push(IssueCode::Required, here(), "Missing resourceType");
            return None;
        };
        let Some(rt) = rt.as_str() else {
            self.push(
                IssueCode::Structure,
                format!("{}.resourceType", here()).trim_start_matches('.'),
                "resourceType must be a string",
            );
            return None;
        };
        let Some(td) = self
            .defs
            .type_def(rt)
            .filter(|t| t.kind == TypeKind::Resource && !t.is_abstract)
        else {
            let here = here();
            self.push(
                IssueCode::NotSupported,
                if here.is_empty() {
                    "resourceType".to_owned()
                } else {
                    format!("{here}.resourceType")
                },
                format!("Unknown resource type '{}'", primitive::truncate(rt)),
            );
            return None;
        };
        let root = Location::Root(rt);
        let at = at.unwrap_or(&root);
        if depth > MAX_DEPTH {
            self.push(
                IssueCode::TooCostly,
                at.to_string(),
                "Resource is nested too deeply to validate",
            );
            return Some(rt);
        }
        if position == Position::Contained {
            self.contained_rules(obj, at);
        }
        let ids = obj
            .get("contained")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("id").and_then(Value::as_str).map(str::to_owned))
            .collect();
        self.contained_ids.push(ids);
        // A contained resource's %rootResource is its container; otherwise the resource itself.
        let root = match (position, self.resources.last()) {
            (Position::Contained, Some((container, _))) => *container,
            _ => value,
        };
        self.resources.push((value, root));
        self.object(value, obj, td, rt, at, depth + 1, true);
        self.resources.pop();
        self.contained_ids.pop();
        if position != Position::Contained {
            self.contained_are_referenced(obj, at);
        }
        Some(rt)
    }

    /// dom-3: each contained resource is referenced from elsewhere in the resource (or refers
    /// to its container with `#`).
    fn contained_are_referenced(&mut self, obj: &Map<String, Value>, at: &Location<'_>) {
        let Some(contained) = obj.get("contained").and_then(Value::as_array) else {
            return;
        };
        let mut local_refs = HashSet::new();
        for v in obj.values() {
            collect_local_references(v, &mut local_refs, 0);
        }
        for (i, c) in contained.iter().enumerate() {
            let Some(id) = c.get("id").and_then(Value::as_str) else {
                continue; // reported as missing id already
            };
            let mut own = HashSet::new();
            collect_local_references(c, &mut own, 0);
            if !local_refs.contains(id) && !own.contains("") {
                self.push(
                    IssueCode::Invariant,
                    at.member("contained", Some(i)).to_string(),
                    format!(
                        "dom-3: contained resource '{}' is not referenced from the resource",
                        primitive::truncate(id)
                    ),
                );
            }
        }
    }

    /// dom-2, dom-4, dom-5 and the need for an id to be referenced.
    fn contained_rules(&mut self, obj: &Map<String, Value>, at: &Location<'_>) {
        if obj.contains_key("contained") {
            self.push(
                IssueCode::Invariant,
                at.to_string(),
                "dom-2: a contained resource must not contain resources",
            );
        }
        if let Some(meta) = obj.get("meta").and_then(Value::as_object) {
            if meta.contains_key("versionId") || meta.contains_key("lastUpdated") {
                self.push(
                    IssueCode::Invariant,
                    at.key("meta").to_string(),
                    "dom-4: a contained resource must not have meta.versionId or meta.lastUpdated",
                );
            }
            if meta.contains_key("security") {
                self.push(
                    IssueCode::Invariant,
                    at.key("meta").to_string(),
                    "dom-5: a contained resource must not have security labels",
                );
            }
        }
        if !obj.contains_key("id") {
            self.push(
                IssueCode::Required,
                at.key("id").to_string(),
                "A contained resource must have an id to be referenced",
            );
        }
    }

    /// Checks a JSON object against the children of `path` in `td`.
    #[allow(clippy::too_many_arguments)]
    fn object(
        &mut self,
        value: &'v Value,
        obj: &'v Map<String, Value>,
        td: &'static TypeDef,
        path: &str,
        at: &Location<'_>,
        depth: usize,
        is_resource_root: bool,
    ) {
        if depth > MAX_DEPTH {
            self.push(
                IssueCode::TooCostly,
                at.to_string(),
                "Element is nested too deeply to validate",
            );
            return;
        }
        // ele-1: every element has a value or children (resourceType alone is not content).
        if obj.is_empty()
            || (is_resource_root && obj.len() == 1 && obj.contains_key("resourceType"))
        {
            self.push(
                IssueCode::Invariant,
                at.to_string(),
                "ele-1: an element must have a value or children; empty objects are not allowed",
            );
            return;
        }
        let children = td.children(path);
        // Both bounded by the number of children `path` defines, however large the object;
        // elements are compared by address (one table holds them all).
        let mut present: Vec<&ElementDef> = Vec::new();
        let mut choice_used: Vec<(&ElementDef, &str)> = Vec::new();
        // Most objects have no `_name` twins; then no lookup for them is needed.
        let has_twins = obj.keys().any(|k| k.starts_with('_'));
        for (key, value) in obj {
            if is_resource_root && key == "resourceType" {
                continue;
            }
            let (is_extension_part, name) = match key.strip_prefix('_') {
                Some(rest) => (true, rest),
                None => (false, key.as_str()),
            };
            let child = at.key(key);
            let Some((el, ty)) = children.and_then(|c| c.named(name)) else {
                self.push(
                    IssueCode::Structure,
                    child.to_string(),
                    format!("Unknown element '{}'", primitive::truncate(key)),
                );
                continue;
            };
            if !present.iter().any(|p| std::ptr::eq(*p, el)) {
                present.push(el);
            }
            // A choice element takes exactly one of its types.
            if el.is_choice() {
                match choice_used.iter().find(|(e, _)| std::ptr::eq(*e, el)) {
                    Some((_, first)) if *first != name => {
                        let message = format!(
                            "Only one type of '{}' is allowed; '{first}' is already present",
                            el.name
                        );
                        self.push(IssueCode::Structure, child.to_string(), message);
                        continue;
                    }
                    Some(_) => {}
                    None => choice_used.push((el, name)),
                }
            }
            // Resource.id is typed string in the R4 snapshot, but a logical id has the id format.
            let ty_code = match ty {
                Some(_) if is_resource_root && name == "id" => Some("id"),
                Some(t) => Some(t.code),
                None => None,
            };
            let is_primitive = ty_code.is_some_and(|c| self.defs.primitive(c).is_some());
            if is_extension_part && !is_primitive {
                self.push(
                    IssueCode::Structure,
                    child.to_string(),
                    format!(
                        "'{key}' is only allowed for primitive elements; '{name}' is not primitive"
                    ),
                );
                continue;
            }
            // The parallel array of the other half (`given` vs `_given`) makes null items legal.
            let sibling = if is_extension_part {
                obj.get(name)
            } else if has_twins {
                obj.get(&format!("_{name}"))
            } else {
                None
            };
            let (items, indexed): (&'v [Value], bool) = match value {
                Value::Array(arr) => {
                    if !el.max.is_repeating() {
                        self.push(
                            IssueCode::Structure,
                            child.to_string(),
                            format!(
                                "'{name}' has max cardinality {}, it must not be an array",
                                el.max
                            ),
                        );
                        continue;
                    }
                    if arr.is_empty() {
                        self.push(
                            IssueCode::Structure,
                            child.to_string(),
                            "Arrays must not be empty; omit the element instead",
                        );
                        continue;
                    }
                    if let Some(Value::Array(other)) = sibling {
                        if other.len() != arr.len() {
                            self.push(
                                IssueCode::Structure,
                                child.to_string(),
                                format!(
                                    "'{name}' and '_{name}' must have the same number of items"
                                ),
                            );
                        }
                    }
                    let non_null = arr.iter().filter(|v| !v.is_null()).count();
                    if !el.max.allows(non_null) {
                        self.push(
                            IssueCode::Structure,
                            child.to_string(),
                            format!("'{name}' allows at most {} items, found {non_null}", el.max),
                        );
                    }
                    (arr.as_slice(), true)
                }
                _ if el.max.is_repeating() => {
                    self.push(
                        IssueCode::Structure,
                        child.to_string(),
                        format!("'{name}' repeats (max {}), it must be an array", el.max),
                    );
                    continue;
                }
                single => (std::slice::from_ref(single), false),
            };
            for (i, item) in items.iter().enumerate() {
                let index = indexed.then_some(i);
                let item_at = at.member(key, index);
                if item.is_null() {
                    let paired = is_primitive
                        && index.is_some_and(|i| {
                            matches!(sibling, Some(Value::Array(other)) if other.get(i).is_some_and(|o| !o.is_null()))
                        });
                    if !paired {
                        self.push(IssueCode::Structure, item_at.to_string(), "null is only allowed in a primitive array paired with a value in its '_' twin");
                    }
                    continue;
                }
                if is_extension_part {
                    self.primitive_extension(item, &item_at, depth);
                } else {
                    self.value(td, el, ty, ty_code, item, &item_at, depth);
                }
            }
        }
        // Required elements of this object.
        for el in children.iter().flat_map(|c| c.required()) {
            if !present.iter().any(|p| std::ptr::eq(*p, el)) {
                let message = if el.is_choice() {
                    format!("Missing required element '{}' (one of its types)", el.name)
                } else {
                    format!("Missing required element '{}'", el.name)
                };
                self.push(IssueCode::Required, at.key(el.stem()).to_string(), message);
            }
        }
        self.invariants(path, value, at);
    }

    /// The base invariants defined on `path` (`Observation`, `Observation.component`, `Period`),
    /// evaluated with this object as `$this`. One that cannot be evaluated is skipped.
    fn invariants(&mut self, path: &str, value: &'v Value, at: &Location<'_>) {
        if !self.options.base_invariants {
            return;
        }
        let list = invariants::for_path(path);
        if list.is_empty() {
            return;
        }
        let Some(&(resource, root)) = self.resources.last() else {
            return;
        };
        for inv in list {
            if let Ok(Some(false)) = inv.compiled.check(value, None, resource, root) {
                self.push(
                    IssueCode::Invariant,
                    at.to_string(),
                    format!("{}: {}", inv.key, inv.human),
                );
            }
        }
    }

    /// `_name`: the id/extension of a primitive value.
    fn primitive_extension(&mut self, item: &'v Value, at: &Location<'_>, depth: usize) {
        let Value::Object(obj) = item else {
            self.push(
                IssueCode::Structure,
                at.to_string(),
                format!(
                    "Expected an object with id/extension, found {}",
                    primitive::json_kind(item)
                ),
            );
            return;
        };
        if let Some(element) = self.defs.type_def("Element") {
            self.object(item, obj, element, "Element", at, depth + 1, false);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn value(
        &mut self,
        td: &'static TypeDef,
        el: &ElementDef,
        ty: Option<&TypeRef>,
        ty_code: Option<&str>,
        item: &'v Value,
        at: &Location<'_>,
        depth: usize,
    ) {
        if let Some(target) = &el.content_reference {
            // Recursive structures (Questionnaire.item.item): the referenced element's children apply.
            self.nested_object(item, td, target, at, depth);
            return;
        }
        let Some(code) = ty_code else { return };
        if let Some(p) = self.defs.primitive(code) {
            if let Some(message) = primitive::check(p, item) {
                let issue_code =
                    if matches!(item, Value::String(_) | Value::Number(_) | Value::Bool(_))
                        && same_json_kind(p, item)
                    {
                        IssueCode::Value
                    } else {
                        IssueCode::Structure
                    };
                self.push(issue_code, at.to_string(), message);
                return;
            }
        } else if code == "Resource" {
            let position = if el.name == "contained" {
                Position::Contained
            } else {
                Position::Inline
            };
            self.resource(item, Some(at), depth + 1, position);
            return;
        } else if td.children_of(el.path).next().is_some() {
            // BackboneElement / Element defined inline in this type.
            self.nested_object(item, td, el.path, at, depth);
        } else if let Some(datatype) = self.defs.type_def(code) {
            if !self.nested_object(item, datatype, code, at, depth) {
                return;
            }
            match code {
                "Reference" => {
                    self.reference(item, ty.map(|t| t.targets.as_slice()).unwrap_or(&[]), at)
                }
                "Extension" => self.extension(item, at),
                _ => {}
            }
        }
        if let Some(vs) = &el.required_binding {
            if let Some(message) = binding::check(vs, item) {
                self.push(IssueCode::CodeInvalid, at.to_string(), message);
            }
        }
    }

    /// Returns false when `item` is not an object (already reported).
    fn nested_object(
        &mut self,
        item: &'v Value,
        td: &'static TypeDef,
        path: &str,
        at: &Location<'_>,
        depth: usize,
    ) -> bool {
        match item {
            Value::Object(obj) => {
                self.object(item, obj, td, path, at, depth + 1, false);
                true
            }
            other => {
                self.push(
                    IssueCode::Structure,
                    at.to_string(),
                    // `path` names the datatype (`CodeableConcept`) or the backbone element
                    // (`MedicationRequest.dispenseRequest`).
                    format!(
                        "Expected an object ({path}), found {}",
                        primitive::json_kind(other)
                    ),
                );
                false
            }
        }
    }

    /// Reference.reference format and target type.
    fn reference(&mut self, item: &Value, targets: &[&str], at: &Location<'_>) {
        let Some(reference) = item.get("reference").and_then(Value::as_str) else {
            return;
        };
        let ref_at = || at.key("reference").to_string();
        let shown = || primitive::truncate(reference);
        if let Some(local) = reference.strip_prefix('#') {
            // "#" alone points from a contained resource to its container.
            let known =
                local.is_empty() || self.contained_ids.iter().any(|ids| ids.contains(local));
            if !known {
                self.push(
                    IssueCode::Invariant,
                    ref_at(),
                    format!(
                        "ref-1: local reference '{}' does not match a contained resource id",
                        shown()
                    ),
                );
            }
            return;
        }
        if reference.starts_with("urn:uuid:") || reference.starts_with("urn:oid:") {
            let kind = if reference.starts_with("urn:uuid:") {
                "uuid"
            } else {
                "oid"
            };
            if let Some(p) = self.defs.primitive(kind) {
                if primitive::check_text(p, reference).is_some() {
                    self.push(
                        IssueCode::Value,
                        ref_at(),
                        format!("'{}' is not a valid {kind} reference", shown()),
                    );
                }
            }
            return;
        }
        let type_name = if reference.contains("://") {
            // Absolute URL: a FHIR RESTful URL ends with Type/id, other URLs are opaque.
            let segments: Vec<&str> = reference.trim_end_matches('/').rsplit('/').collect();
            // rsplit order: id, Type, ... or vid, "_history", id, Type, ...
            let tail_type = match segments.as_slice() {
                [_, "_history", _, t, ..] => Some(*t),
                [_, t, ..] => Some(*t),
                _ => None,
            };
            tail_type.filter(|t| crate::fhir::definitions::is_resource_type(t))
        } else if let Some((t, _query)) = reference.split_once('?') {
            // Conditional reference (transaction bundles): resolved by the transaction processor.
            if !crate::fhir::definitions::is_resource_type(t) {
                self.push(
                    IssueCode::Value,
                    ref_at(),
                    format!(
                        "Conditional reference '{}' names an unknown resource type",
                        shown()
                    ),
                );
                return;
            }
            Some(t)
        } else {
            let mut parts = reference.split('/');
            let parsed = match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some(t), Some(id), None, _) => Some((t, id, None)),
                (Some(t), Some(id), Some("_history"), Some(v)) if parts.next().is_none() => {
                    Some((t, id, Some(v)))
                }
                _ => None,
            };
            let Some((t, id, version)) = parsed else {
                self.push(IssueCode::Value, ref_at(), format!("'{}' is not a valid reference: expected 'Type/id', an absolute URL, 'urn:uuid:...' or '#id'", shown()));
                return;
            };
            if !crate::fhir::definitions::is_resource_type(t) {
                self.push(
                    IssueCode::Value,
                    ref_at(),
                    format!(
                        "Reference '{}' names an unknown resource type '{}'",
                        shown(),
                        primitive::truncate(t)
                    ),
                );
                return;
            }
            let id_ok = |s: &str| {
                self.defs
                    .primitive("id")
                    .is_some_and(|p| primitive::check_text(p, s).is_none())
            };
            if !id_ok(id) || version.is_some_and(|v| !id_ok(v)) {
                self.push(
                    IssueCode::Value,
                    ref_at(),
                    format!("Reference '{}' has an invalid id", shown()),
                );
                return;
            }
            Some(t)
        };
        let Some(type_name) = type_name else { return };
        let open = targets.is_empty() || targets.contains(&"Resource");
        if !open && !targets.contains(&type_name) {
            self.push(
                IssueCode::Value,
                ref_at(),
                format!(
                    "Reference to {type_name} is not allowed here; allowed targets: {}",
                    targets.join(", ")
                ),
            );
        }
        if let Some(declared) = item.get("type").and_then(Value::as_str) {
            if declared != type_name && crate::fhir::definitions::is_resource_type(declared) {
                self.push(IssueCode::Value, at.key("type").to_string(), format!("Reference.type '{declared}' does not match the referenced type {type_name}"));
            }
        }
    }

    /// ext-1: an extension has either a value or nested extensions, not both.
    fn extension(&mut self, item: &Value, at: &Location<'_>) {
        let Some(obj) = item.as_object() else { return };
        let has_value = obj.keys().any(|k| k.starts_with("value"));
        let has_nested = obj.contains_key("extension");
        if has_value == has_nested {
            self.push(
                IssueCode::Invariant,
                at.to_string(),
                "ext-1: an extension must have either extensions or a value[x], not both",
            );
        }
    }
}

/// Ids named by local references (`#id`; `""` for `#` alone) anywhere under `value`.
fn collect_local_references(value: &Value, out: &mut HashSet<String>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match value {
        Value::Object(obj) => {
            for (k, v) in obj {
                match (k.as_str(), v) {
                    ("reference", Value::String(r)) => {
                        if let Some(id) = r.strip_prefix('#') {
                            out.insert(id.to_owned());
                        }
                    }
                    _ => collect_local_references(v, out, depth + 1),
                }
            }
        }
        Value::Array(items) => {
            for v in items {
                collect_local_references(v, out, depth + 1);
            }
        }
        _ => {}
    }
}

fn same_json_kind(p: &crate::fhir::definitions::PrimitiveDef, v: &Value) -> bool {
    use crate::fhir::definitions::PrimitiveJson as J;
    matches!(
        (p.json, v),
        (J::Boolean, Value::Bool(_))
            | (J::Integer | J::Decimal, Value::Number(_))
            | (J::String, Value::String(_))
    )
}
