//! Users: ids supplied by the customer, unique per project, and a profile whose every field
//! is validated here. The HTTP layer only moves JSON in and out.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::Date;
use time::macros::format_description;
use utoipa::ToSchema;

use crate::ValidationErrors;
use crate::ids::is_valid_external_id;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum MeasurementUnit {
    #[default]
    Metric,
    Imperial,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Gender {
    Male,
    Female,
    Other,
}

/// Training thresholds used to compute zones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Functional threshold power, watts (0 < ftp <= 2000).
    #[serde(default)]
    #[schema(exclusive_minimum = 0, maximum = 2000)]
    pub ftp: Option<f64>,
    /// Lactate threshold heart rate, beats per minute (30-250).
    #[serde(default)]
    #[schema(minimum = 30, maximum = 250)]
    pub lthr: Option<f64>,
    /// Maximum heart rate, beats per minute (30-250).
    #[serde(default)]
    #[schema(minimum = 30, maximum = 250)]
    pub mhr: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// Latitude in degrees, -90 to 90.
    #[schema(minimum = -90, maximum = 90)]
    pub lat: f64,
    /// Longitude in degrees, -180 to 180.
    #[schema(minimum = -180, maximum = 180)]
    pub lon: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CoachConfig {
    pub enabled: bool,
}

/// Everything about a user except its id and timestamps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct UserProfile {
    /// BCP 47 language tag, e.g. `en` or `de-CH`.
    #[serde(default)]
    #[schema(example = "en", max_length = 35, pattern = r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")]
    pub language: Option<String>,
    /// Offset from UTC in seconds (-43200 to 50400).
    #[serde(default)]
    #[schema(example = 3600, minimum = -43200, maximum = 50400)]
    pub tz_offset: Option<i32>,
    /// Up to 100 characters.
    #[serde(default)]
    #[schema(max_length = 100)]
    pub firstname: Option<String>,
    /// Up to 100 characters.
    #[serde(default)]
    #[schema(max_length = 100)]
    pub lastname: Option<String>,
    /// `metric` unless set.
    #[serde(default)]
    pub measurement_unit: Option<MeasurementUnit>,
    #[serde(default)]
    pub gender: Option<Gender>,
    /// Date of birth, `YYYY-MM-DD`, between 1900-01-01 and today.
    #[serde(default)]
    #[schema(format = Date, example = "1990-04-12")]
    pub birthday: Option<String>,
    /// Height in centimetres (0 < height <= 300).
    #[serde(default)]
    #[schema(exclusive_minimum = 0, maximum = 300)]
    pub height: Option<f64>,
    /// Weight in kilograms (0 < weight <= 700).
    #[serde(default)]
    #[schema(exclusive_minimum = 0, maximum = 700)]
    pub weight: Option<f64>,
    #[serde(default)]
    pub thresholds: Option<Thresholds>,
    #[serde(default)]
    pub location: Option<Location>,
    #[serde(default)]
    pub coach_config: Option<CoachConfig>,
}

/// A provider synchronisation shown on the user (filled by wearable ingestion).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DataSync {
    pub data_type: String,
    pub sync_type: String,
    pub provider: String,
    pub status: String,
    pub updated_at: String,
}

/// Body of `POST /users`: the id plus any profile field. Parsed by [`parse_new_user`];
/// this type exists for the OpenAPI document.
pub struct CreateUserRequest;

/// Body of `PUT /users/{user_id}`: the whole profile; `id`, if present, must equal the path.
pub struct ReplaceUserRequest;

/// A user as the API returns it: the id, every profile field, syncs and timestamps.
#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: String,
    #[serde(flatten)]
    pub profile: UserProfile,
    pub data_syncs: Vec<DataSync>,
    pub created_at: String,
    pub updated_at: String,
}

// The request and response schemas are the profile's own object schema with `id` (and, for
// responses, the server-set fields) added, not an `allOf`: the profile forbids unknown
// properties, and an `allOf` of a closed schema with `id` would be unsatisfiable.
mod schema {
    use utoipa::openapi::schema::{ArrayBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
    use utoipa::openapi::{Ref, RefOr};
    use utoipa::{PartialSchema, ToSchema};

    use super::{CreateUserRequest, DataSync, ReplaceUserRequest, User, UserProfile};

    const ID_DESCRIPTION: &str = "Customer-supplied id, unique within the project: 1-128 characters of letters, digits and `_ - . : @ |`, starting with a letter or digit.";

    fn id_schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(128))
            .pattern(Some(r"^[A-Za-z0-9][A-Za-z0-9_.:@|-]{0,127}$"))
            .description(Some(ID_DESCRIPTION))
            .examples(["user_123"])
            .into()
    }

    fn date_time() -> RefOr<Schema> {
        ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))).into()
    }

    fn profile_with(extra: Vec<(&str, RefOr<Schema>, bool)>, closed: bool) -> RefOr<Schema> {
        let RefOr::T(Schema::Object(mut object)) = UserProfile::schema() else { unreachable!("the profile is an inline object schema") };
        for (name, schema, required) in extra {
            object.properties.insert(name.to_owned(), schema);
            if required {
                object.required.push(name.to_owned());
            }
        }
        if !closed {
            object.additional_properties = None;
        }
        RefOr::T(Schema::Object(object))
    }

    fn profile_dependencies(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        <UserProfile as ToSchema>::schemas(schemas);
    }

    impl PartialSchema for CreateUserRequest {
        fn schema() -> RefOr<Schema> {
            profile_with(vec![("id", id_schema(), true)], true)
        }
    }
    impl ToSchema for CreateUserRequest {
        fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
            profile_dependencies(schemas);
        }
    }

    impl PartialSchema for ReplaceUserRequest {
        fn schema() -> RefOr<Schema> {
            profile_with(vec![("id", id_schema(), false)], true)
        }
    }
    impl ToSchema for ReplaceUserRequest {
        fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
            profile_dependencies(schemas);
        }
    }

    impl PartialSchema for User {
        fn schema() -> RefOr<Schema> {
            let syncs = ArrayBuilder::new().items(Ref::from_schema_name("DataSync")).into();
            profile_with(
                vec![
                    ("id", id_schema(), true),
                    ("data_syncs", syncs, true),
                    ("created_at", date_time(), true),
                    ("updated_at", date_time(), true),
                ],
                false,
            )
        }
    }
    impl ToSchema for User {
        fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
            profile_dependencies(schemas);
            schemas.push((DataSync::name().into_owned(), DataSync::schema()));
        }
    }
}

/// Parses and validates a create body; returns the id and the profile to store.
pub fn parse_new_user(body: Value) -> Result<(String, UserProfile), ValidationErrors> {
    let mut object = into_object(body)?;
    let id = match object.remove("id") {
        Some(Value::String(id)) => id,
        Some(_) => return Err(ValidationErrors::single("id", "must be a string")),
        None => return Err(ValidationErrors::single("id", "is required")),
    };
    if !is_valid_external_id(&id) {
        return Err(ValidationErrors::single(
            "id",
            "must be 1-128 characters of letters, digits and _ - . : @ |, starting with a letter or digit",
        ));
    }
    let profile = profile_from_object(object)?;
    Ok((id, profile))
}

/// Parses a full replacement (`PUT`): every absent field is cleared.
pub fn parse_replacement(user_id: &str, body: Value) -> Result<UserProfile, ValidationErrors> {
    let mut object = into_object(body)?;
    check_id_unchanged(user_id, object.remove("id"))?;
    profile_from_object(object)
}

/// Applies a JSON merge patch (RFC 7396) to a stored profile: absent fields stay,
/// `null` clears a field, objects merge recursively.
pub fn apply_merge_patch(user_id: &str, current: &UserProfile, patch: Value) -> Result<UserProfile, ValidationErrors> {
    let mut patch = into_object(patch)?;
    check_id_unchanged(user_id, patch.remove("id"))?;
    let mut merged = serde_json::to_value(current).expect("profile serializes");
    merge_patch(&mut merged, Value::Object(patch));
    let Value::Object(object) = merged else { unreachable!("a profile serializes to an object") };
    profile_from_object(object)
}

fn check_id_unchanged(user_id: &str, id: Option<Value>) -> Result<(), ValidationErrors> {
    match id {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(id)) if id == user_id => Ok(()),
        Some(_) => Err(ValidationErrors::single("id", "cannot be changed; it must equal the user id in the path")),
    }
}

fn into_object(body: Value) -> Result<Map<String, Value>, ValidationErrors> {
    match body {
        Value::Object(object) => Ok(object),
        _ => Err(ValidationErrors::single("", "the body must be a JSON object")),
    }
}

fn merge_patch(target: &mut Value, patch: Value) {
    match patch {
        Value::Object(patch) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let target = target.as_object_mut().expect("just made an object");
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(&key);
                } else {
                    merge_patch(target.entry(key).or_insert(Value::Null), value);
                }
            }
        }
        other => *target = other,
    }
}

fn profile_from_object(object: Map<String, Value>) -> Result<UserProfile, ValidationErrors> {
    let mut profile: UserProfile = deserialize_with_paths(Value::Object(object))?;
    profile.measurement_unit.get_or_insert(MeasurementUnit::Metric);
    validate_profile(&profile).into_result(profile)
}

/// Deserializes `value`, turning serde's message into a field error with the JSON path.
pub fn deserialize_with_paths<T: DeserializeOwned>(value: Value) -> Result<T, ValidationErrors> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let message = err.inner().to_string();
        // At the root serde_path_to_error reports `.`; name the unknown field itself there.
        let path = match message.strip_prefix("unknown field `").and_then(|rest| rest.split_once('`')) {
            Some((field, _)) if path == "." => field.to_owned(),
            _ if path == "." => String::new(),
            _ => path,
        };
        ValidationErrors::single(path, message)
    })
}

fn validate_profile(p: &UserProfile) -> ValidationErrors {
    let mut errors = ValidationErrors::default();
    if let Some(language) = &p.language
        && !is_language_tag(language)
    {
        errors.push("language", "must be a BCP 47 language tag such as `en` or `de-CH`");
    }
    if let Some(tz) = p.tz_offset
        && !(-43_200..=50_400).contains(&tz)
    {
        errors.push("tz_offset", "must be between -43200 and 50400 seconds");
    }
    for (path, name) in [("firstname", &p.firstname), ("lastname", &p.lastname)] {
        if let Some(name) = name
            && (name.chars().count() > 100 || name.chars().any(char::is_control))
        {
            errors.push(path, "must be at most 100 characters, without control characters");
        }
    }
    if let Some(birthday) = &p.birthday {
        check_birthday(birthday, &mut errors);
    }
    check_range(&mut errors, "height", p.height, 0.0, 300.0, "must be above 0 and at most 300 (centimetres)");
    check_range(&mut errors, "weight", p.weight, 0.0, 700.0, "must be above 0 and at most 700 (kilograms)");
    if let Some(t) = &p.thresholds {
        check_range(&mut errors, "thresholds.ftp", t.ftp, 0.0, 2000.0, "must be above 0 and at most 2000 (watts)");
        check_inclusive(&mut errors, "thresholds.lthr", t.lthr, 30.0, 250.0, "must be between 30 and 250 (beats per minute)");
        check_inclusive(&mut errors, "thresholds.mhr", t.mhr, 30.0, 250.0, "must be between 30 and 250 (beats per minute)");
    }
    if let Some(loc) = &p.location {
        check_inclusive(&mut errors, "location.lat", Some(loc.lat), -90.0, 90.0, "must be between -90 and 90");
        check_inclusive(&mut errors, "location.lon", Some(loc.lon), -180.0, 180.0, "must be between -180 and 180");
    }
    errors
}

/// Exclusive lower bound, inclusive upper bound.
fn check_range(errors: &mut ValidationErrors, path: &str, value: Option<f64>, above: f64, max: f64, message: &str) {
    if let Some(v) = value
        && !(v.is_finite() && v > above && v <= max)
    {
        errors.push(path, message);
    }
}

fn check_inclusive(errors: &mut ValidationErrors, path: &str, value: Option<f64>, min: f64, max: f64, message: &str) {
    if let Some(v) = value
        && !(v.is_finite() && v >= min && v <= max)
    {
        errors.push(path, message);
    }
}

fn check_birthday(value: &str, errors: &mut ValidationErrors) {
    let format = format_description!("[year]-[month]-[day]");
    match Date::parse(value, &format) {
        Ok(date) => {
            let today = time::OffsetDateTime::now_utc().date();
            if date.year() < 1900 || date > today {
                errors.push("birthday", "must be between 1900-01-01 and today");
            }
        }
        Err(_) => errors.push("birthday", "must be a calendar date in the form YYYY-MM-DD"),
    }
}

fn is_language_tag(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let primary = parts.next().unwrap_or_default();
    tag.len() <= 35
        && (2..=3).contains(&primary.len())
        && primary.bytes().all(|b| b.is_ascii_alphabetic())
        && parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn quickstart_body() -> Value {
        json!({"id": "user_123", "firstname": "Avery", "lastname": "Smith", "language": "en",
               "measurement_unit": "metric", "tz_offset": 3600})
    }

    #[test]
    fn quickstart_user_is_valid() {
        let (id, profile) = parse_new_user(quickstart_body()).unwrap();
        assert_eq!(id, "user_123");
        assert_eq!(profile.firstname.as_deref(), Some("Avery"));
        assert_eq!(profile.tz_offset, Some(3600));
    }

    #[test]
    fn measurement_unit_defaults_to_metric() {
        let (_, profile) = parse_new_user(json!({"id": "u1"})).unwrap();
        assert_eq!(profile.measurement_unit, Some(MeasurementUnit::Metric));
    }

    #[test]
    fn every_rule_names_its_field() {
        let cases = [
            (json!({"id": "u", "tz_offset": 999_999}), "tz_offset"),
            (json!({"id": "u", "tz_offset": "3600"}), "tz_offset"),
            (json!({"id": "u", "language": "english!"}), "language"),
            (json!({"id": "u", "birthday": "1990-02-30"}), "birthday"),
            (json!({"id": "u", "birthday": "2999-01-01"}), "birthday"),
            (json!({"id": "u", "height": 0}), "height"),
            (json!({"id": "u", "weight": 701}), "weight"),
            (json!({"id": "u", "gender": "robot"}), "gender"),
            (json!({"id": "u", "measurement_unit": "furlongs"}), "measurement_unit"),
            (json!({"id": "u", "thresholds": {"mhr": 300}}), "thresholds.mhr"),
            (json!({"id": "u", "thresholds": {"vo2": 3}}), "thresholds.vo2"),
            (json!({"id": "u", "location": {"lat": 91, "lon": 0}}), "location.lat"),
            (json!({"id": "u", "location": {"lat": 1}}), "location"),
            (json!({"id": "u", "coach_config": {"enabled": "yes"}}), "coach_config.enabled"),
            (json!({"id": "u", "nickname": "x"}), "nickname"),
            (json!({"id": "u", "firstname": "a".repeat(101)}), "firstname"),
            (json!({"id": "bad id"}), "id"),
            (json!({"id": 7}), "id"),
            (json!({"firstname": "x"}), "id"),
        ];
        for (body, path) in cases {
            let errors = parse_new_user(body.clone()).expect_err(&body.to_string());
            assert_eq!(errors.0[0].path, path, "{body}: {errors}");
        }
    }

    #[test]
    fn merge_patch_keeps_absent_and_clears_null() {
        let (_, profile) = parse_new_user(quickstart_body()).unwrap();
        let patched = apply_merge_patch("user_123", &profile, json!({"firstname": null, "thresholds": {"ftp": 250}})).unwrap();
        assert_eq!(patched.firstname, None);
        assert_eq!(patched.lastname.as_deref(), Some("Smith"));
        assert_eq!(patched.thresholds.unwrap().ftp, Some(250.0));
        let again = apply_merge_patch("user_123", &profile, json!({"measurement_unit": null})).unwrap();
        assert_eq!(again.measurement_unit, Some(MeasurementUnit::Metric));
    }

    #[test]
    fn id_cannot_change() {
        let profile = UserProfile::default();
        assert!(apply_merge_patch("a", &profile, json!({"id": "b"})).is_err());
        assert!(apply_merge_patch("a", &profile, json!({"id": "a"})).is_ok());
        assert!(parse_replacement("a", json!({"id": "b"})).is_err());
    }

    #[test]
    fn replacement_clears_absent_fields() {
        let profile = parse_replacement("a", json!({"language": "de"})).unwrap();
        assert_eq!(profile.firstname, None);
        assert_eq!(profile.language.as_deref(), Some("de"));
    }

    #[test]
    fn non_objects_are_refused() {
        assert!(parse_new_user(json!([1, 2])).is_err());
        assert!(apply_merge_patch("a", &UserProfile::default(), json!("x")).is_err());
    }
}
