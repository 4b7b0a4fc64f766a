//! Hand-written prost messages: the subset of TensorBoard's protos this crate
//! writes.
//!
//! Field numbers were copied from tensorflow/tensorboard at commit
//! `70b76c92` and cross-checked against the descriptors of the PyPI
//! `tensorboard` 2.21.0 wheel (`*_pb2.DESCRIPTOR.fields`). Fields we never
//! write are left out: an absent proto3 field reads back as its default, so
//! leaving it out of the struct is the same as never setting it.

use std::collections::BTreeMap;

/// `tensorboard/compat/proto/event.proto`, message `Event`.
///
/// `wall_time = 1` (double), `step = 2` (int64),
/// `oneof what { string file_version = 3; bytes graph_def = 4; Summary summary = 5; ... }`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    #[prost(int64, tag = "2")]
    pub step: i64,
    #[prost(oneof = "event::What", tags = "3, 5")]
    pub what: Option<event::What>,
}

/// Nested types of [`Event`].
pub mod event {
    /// `event.proto`: `oneof what` (only the two arms we write).
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum What {
        /// `string file_version = 3;` the first record of every file, `"brain.Event:2"`.
        #[prost(string, tag = "3")]
        FileVersion(String),
        /// `Summary summary = 5;`
        #[prost(message, tag = "5")]
        Summary(super::Summary),
    }
}

/// `tensorboard/compat/proto/summary.proto`, message `Summary`:
/// `repeated Value value = 1;`
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<summary::Value>,
}

/// Nested types of [`Summary`].
pub mod summary {
    /// `summary.proto`, message `Summary.Value`:
    /// `tag = 1`, `metadata = 9`,
    /// `oneof value { float simple_value = 2; ... TensorProto tensor = 8; }`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Value {
        #[prost(string, tag = "1")]
        pub tag: String,
        #[prost(message, optional, tag = "9")]
        pub metadata: Option<super::SummaryMetadata>,
        #[prost(oneof = "value::Value", tags = "2, 8")]
        pub value: Option<value::Value>,
    }

    /// Nested types of [`Value`].
    pub mod value {
        /// `summary.proto`: `Summary.Value.oneof value` (only the arms we write).
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Value {
            /// `float simple_value = 2;` the legacy scalar form that every
            /// TensorBoard reader (EventAccumulator `Scalars`, the data
            /// provider via `data_compat`) understands.
            #[prost(float, tag = "2")]
            SimpleValue(f32),
            /// `TensorProto tensor = 8;`
            #[prost(message, tag = "8")]
            Tensor(super::super::TensorProto),
        }
    }
}

/// `summary.proto`, message `SummaryMetadata`:
/// `plugin_data = 1`, `display_name = 2`, `summary_description = 3`,
/// `DataClass data_class = 4` (left unset: TensorBoard's `dataclass_compat`
/// fills it in for the known plugins, as it does for files written by the
/// Python writers).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryMetadata {
    #[prost(message, optional, tag = "1")]
    pub plugin_data: Option<PluginData>,
    #[prost(string, tag = "2")]
    pub display_name: String,
    #[prost(string, tag = "3")]
    pub summary_description: String,
}

/// `summary.proto`, message `SummaryMetadata.PluginData`:
/// `string plugin_name = 1; bytes content = 2;`
#[derive(Clone, PartialEq, prost::Message)]
pub struct PluginData {
    #[prost(string, tag = "1")]
    pub plugin_name: String,
    #[prost(bytes = "vec", tag = "2")]
    pub content: Vec<u8>,
}

/// `tensorboard/compat/proto/types.proto`, enum `DataType`: `DT_FLOAT = 1`.
pub const DT_FLOAT: i32 = 1;
/// `types.proto`, enum `DataType`: `DT_STRING = 7`.
pub const DT_STRING: i32 = 7;

/// `tensorboard/compat/proto/tensor.proto`, message `TensorProto`:
/// `DataType dtype = 1`, `TensorShapeProto tensor_shape = 2`,
/// `repeated float float_val = 5 [packed]`, `repeated bytes string_val = 8`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    #[prost(int32, tag = "1")]
    pub dtype: i32,
    #[prost(message, optional, tag = "2")]
    pub tensor_shape: Option<TensorShapeProto>,
    #[prost(float, repeated, tag = "5")]
    pub float_val: Vec<f32>,
    #[prost(bytes = "vec", repeated, tag = "8")]
    pub string_val: Vec<Vec<u8>>,
}

/// `tensorboard/compat/proto/tensor_shape.proto`, message `TensorShapeProto`:
/// `repeated Dim dim = 2; bool unknown_rank = 3;` (no dims = a scalar).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    #[prost(message, repeated, tag = "2")]
    pub dim: Vec<Dim>,
}

/// `tensor_shape.proto`, message `TensorShapeProto.Dim`:
/// `int64 size = 1; string name = 2;`
#[derive(Clone, PartialEq, prost::Message)]
pub struct Dim {
    #[prost(int64, tag = "1")]
    pub size: i64,
}

/// `tensorboard/plugins/hparams/plugin_data.proto`, message `HParamsPluginData`:
/// `int32 version = 1;`
/// `oneof data { Experiment experiment = 2; SessionStartInfo session_start_info = 3;
/// SessionEndInfo session_end_info = 4; }`.
///
/// `version` must be 0 (`metadata.PLUGIN_DATA_VERSION`); the plugin rejects
/// any other value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HParamsPluginData {
    #[prost(int32, tag = "1")]
    pub version: i32,
    #[prost(oneof = "hparams_plugin_data::Data", tags = "2, 3")]
    pub data: Option<hparams_plugin_data::Data>,
}

/// Nested types of [`HParamsPluginData`].
pub mod hparams_plugin_data {
    /// `plugin_data.proto`: `HParamsPluginData.oneof data` (we never write
    /// `session_end_info = 4`).
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Data {
        #[prost(message, tag = "2")]
        Experiment(super::Experiment),
        #[prost(message, tag = "3")]
        SessionStartInfo(super::SessionStartInfo),
    }
}

/// `plugin_data.proto`, message `SessionStartInfo`:
/// `map<string, google.protobuf.Value> hparams = 1`, `model_uri = 2`,
/// `monitor_url = 3`, `string group_name = 4`, `double start_time_secs = 5`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionStartInfo {
    /// A `BTreeMap` so that the encoding is deterministic.
    #[prost(btree_map = "string, message", tag = "1")]
    pub hparams: BTreeMap<String, PbValue>,
    #[prost(string, tag = "4")]
    pub group_name: String,
    #[prost(double, tag = "5")]
    pub start_time_secs: f64,
}

/// `tensorboard/plugins/hparams/api.proto`, message `Experiment`:
/// `string name = 6`, `description = 1`, `user = 2`,
/// `double time_created_secs = 3`, `repeated HParamInfo hparam_infos = 4`,
/// `repeated MetricInfo metric_infos = 5`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Experiment {
    #[prost(double, tag = "3")]
    pub time_created_secs: f64,
    #[prost(message, repeated, tag = "4")]
    pub hparam_infos: Vec<HParamInfoPb>,
    #[prost(message, repeated, tag = "5")]
    pub metric_infos: Vec<MetricInfo>,
}

/// `api.proto`, enum `DataType`: `DATA_TYPE_UNSET = 0`.
pub const DATA_TYPE_UNSET: i32 = 0;
/// `api.proto`, enum `DataType`: `DATA_TYPE_STRING = 1`.
pub const DATA_TYPE_STRING: i32 = 1;
/// `api.proto`, enum `DataType`: `DATA_TYPE_BOOL = 2`.
pub const DATA_TYPE_BOOL: i32 = 2;
/// `api.proto`, enum `DataType`: `DATA_TYPE_FLOAT64 = 3`.
pub const DATA_TYPE_FLOAT64: i32 = 3;

/// `api.proto`, message `HParamInfo`:
/// `string name = 1`, `display_name = 2`, `description = 3`, `DataType type = 4`,
/// `oneof domain { google.protobuf.ListValue domain_discrete = 5; Interval domain_interval = 6; }`,
/// `bool differs = 7`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HParamInfoPb {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(int32, tag = "4")]
    pub r#type: i32,
    #[prost(oneof = "hparam_info_pb::Domain", tags = "5, 6")]
    pub domain: Option<hparam_info_pb::Domain>,
    /// Whether sessions hold different values of it: TensorBoard (2.21,
    /// `backend_context.py: _sort_and_reduce_to_hparams_limit`) lists the hparams that differ
    /// first, then by name.
    #[prost(bool, tag = "7")]
    pub differs: bool,
}

/// Nested types of [`HParamInfoPb`].
pub mod hparam_info_pb {
    /// `api.proto`: `HParamInfo.oneof domain`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Domain {
        #[prost(message, tag = "5")]
        DomainDiscrete(super::PbListValue),
        #[prost(message, tag = "6")]
        DomainInterval(super::Interval),
    }
}

/// `api.proto`, message `Interval`: `double min_value = 1; double max_value = 2;`
#[derive(Clone, PartialEq, prost::Message)]
pub struct Interval {
    #[prost(double, tag = "1")]
    pub min_value: f64,
    #[prost(double, tag = "2")]
    pub max_value: f64,
}

/// `api.proto`, message `MetricInfo`: `MetricName name = 1`,
/// `display_name = 3`, `description = 4`, `DatasetType dataset_type = 5`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricInfo {
    #[prost(message, optional, tag = "1")]
    pub name: Option<MetricName>,
}

/// `api.proto`, message `MetricName`: `string group = 1; string tag = 2;`
///
/// The plugin reads the metric from run `join(session_run, group)`, tag `tag`;
/// an empty group means "the scalar lives in the session's own run".
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricName {
    #[prost(string, tag = "1")]
    pub group: String,
    #[prost(string, tag = "2")]
    pub tag: String,
}

/// `google/protobuf/struct.proto`, message `Value`:
/// `oneof kind { NullValue null_value = 1; double number_value = 2;
/// string string_value = 3; bool bool_value = 4; Struct struct_value = 5;
/// ListValue list_value = 6; }` (we write 2, 3 and 4).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbValue {
    #[prost(oneof = "pb_value::Kind", tags = "2, 3, 4")]
    pub kind: Option<pb_value::Kind>,
}

/// Nested types of [`PbValue`].
pub mod pb_value {
    /// `struct.proto`: `Value.oneof kind` (the scalar arms).
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Kind {
        #[prost(double, tag = "2")]
        NumberValue(f64),
        #[prost(string, tag = "3")]
        StringValue(String),
        #[prost(bool, tag = "4")]
        BoolValue(bool),
    }
}

/// `google/protobuf/struct.proto`, message `ListValue`: `repeated Value values = 1;`
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbListValue {
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<PbValue>,
}
