//! The HParams plugin's vocabulary: a session's hyperparameter values ([`HParamValue`]) and the
//! experiment's columns with their domains ([`HParamInfo`]), and their protobuf forms.

use super::proto::{self, hparam_info_pb, pb_value, PbListValue, PbValue};

/// The value of one hyperparameter of a session (a `google.protobuf.Value` in
/// `SessionStartInfo.hparams`).
#[derive(Debug, Clone, PartialEq)]
pub enum HParamValue {
    Number(f64),
    Text(String),
    Bool(bool),
}

impl HParamValue {
    pub(super) fn to_pb(&self) -> PbValue {
        let kind = match self {
            HParamValue::Number(x) => pb_value::Kind::NumberValue(*x),
            HParamValue::Text(s) => pb_value::Kind::StringValue(s.clone()),
            HParamValue::Bool(b) => pb_value::Kind::BoolValue(*b),
        };
        PbValue { kind: Some(kind) }
    }

    /// The HParams `api.proto` `DataType` of this value.
    fn data_type(&self) -> i32 {
        match self {
            HParamValue::Number(_) => proto::DATA_TYPE_FLOAT64,
            HParamValue::Text(_) => proto::DATA_TYPE_STRING,
            HParamValue::Bool(_) => proto::DATA_TYPE_BOOL,
        }
    }
}

/// The domain of a hyperparameter, shown by the dashboard's filter controls.
#[derive(Debug, Clone, PartialEq)]
pub enum HParamDomain {
    /// No declared domain (the dashboard offers a regex filter).
    Unspecified,
    /// A finite set of values (`domain_discrete`); they should share one type.
    Discrete(Vec<HParamValue>),
    /// A closed real interval (`domain_interval`); implies a FLOAT64 type.
    Interval { min: f64, max: f64 },
}

/// Declaration of one hyperparameter column of the experiment (`api.proto: HParamInfo`).
#[derive(Debug, Clone, PartialEq)]
pub struct HParamInfo {
    pub name: String,
    pub domain: HParamDomain,
}

impl HParamInfo {
    /// A hyperparameter with no declared domain.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), domain: HParamDomain::Unspecified }
    }

    /// A hyperparameter taking one of `values`.
    pub fn discrete(name: impl Into<String>, values: Vec<HParamValue>) -> Self {
        Self { name: name.into(), domain: HParamDomain::Discrete(values) }
    }

    /// A real hyperparameter in `[min, max]`.
    pub fn interval(name: impl Into<String>, min: f64, max: f64) -> Self {
        Self { name: name.into(), domain: HParamDomain::Interval { min, max } }
    }

    pub(super) fn to_pb(&self) -> proto::HParamInfoPb {
        // Like summary_v2.py's `Domain.update_hparam_info`: the type follows the domain; without a
        // domain it stays DATA_TYPE_UNSET.
        // A discrete domain of several values differs between sessions.
        let differs = matches!(&self.domain, HParamDomain::Discrete(values) if values.len() > 1);
        let (ty, domain) = match &self.domain {
            HParamDomain::Unspecified => (proto::DATA_TYPE_UNSET, None),
            HParamDomain::Discrete(values) => (
                values.first().map_or(proto::DATA_TYPE_UNSET, HParamValue::data_type),
                Some(hparam_info_pb::Domain::DomainDiscrete(PbListValue {
                    values: values.iter().map(HParamValue::to_pb).collect(),
                })),
            ),
            HParamDomain::Interval { min, max } => (
                proto::DATA_TYPE_FLOAT64,
                Some(hparam_info_pb::Domain::DomainInterval(proto::Interval {
                    min_value: *min,
                    max_value: *max,
                })),
            ),
        };
        proto::HParamInfoPb { name: self.name.clone(), r#type: ty, domain, differs }
    }
}
