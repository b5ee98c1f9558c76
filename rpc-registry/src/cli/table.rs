//! The table `rpc-registry ls` prints: a header, then one row per instance sorted by service then address, the
//! columns aligned; and the human forms of its cells, a heartbeat's age (`350ms`, `2.1s`) and metadata
//! (`k=v,k=v`). Every cell of text from the registry is escaped and cut (see [`super::escape`]).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::escape::{MAX_LINE_CHARS, escape, field};
use crate::api::{InstanceState, Placement, ServiceReport};

/// The header row.
const HEADER: [&str; 7] = [
    "SERVICE",
    "ADDRESS",
    "WEIGHT",
    "STATE",
    "HEARTBEAT",
    "INCARNATION",
    "METADATA",
];

/// What separates two columns.
const GAP: &str = "   ";

/// The table of the instances in `reports`: a header row, then one row per instance, sorted by service then
/// address; every column as wide as its widest cell, no trailing spaces, each line ending in `\n`. Names,
/// addresses and metadata are escaped and cut ([`super::escape()`]): one instance is always one line. A weight
/// an operator set shows the instance's own beside it: `0 (own 5)`.
///
/// ```
/// use rpc_registry::{Instance, InstanceReport, InstanceState, InstanceStatus, ServiceReport};
/// let instance = Instance {
///     service: "Calc".into(),
///     address: "127.0.0.1:7001".into(),
///     weight: 5,
///     metadata: [("zone".to_owned(), "a".to_owned())].into(),
///     lease: 1,
///     incarnation: 1,
/// };
/// let status = InstanceStatus { instance, state: InstanceState::Up, heartbeat_age_ms: 350 };
/// let report = ServiceReport {
///     name: "Calc".into(),
///     revision: 1,
///     instances: vec![InstanceReport { status, registered_weight: 5, load: None }],
/// };
/// assert_eq!(
///     rpc_registry::cli::render_table(&[report]),
///     "SERVICE   ADDRESS          WEIGHT   STATE   HEARTBEAT   INCARNATION   METADATA\n\
///      Calc      127.0.0.1:7001   5        up      350ms       1             zone=a\n"
/// );
/// ```
pub fn render_table(reports: &[ServiceReport]) -> String {
    render(reports, None)
}

/// As [`render_table`], with a `REPLICA` column after `ADDRESS`: the replica of a replicated registry that
/// holds each instance, from [`Placement::held`] (`-` for an instance it does not name).
pub fn render_table_with_replicas(reports: &[ServiceReport], placement: &Placement) -> String {
    let holders: HashMap<(&str, &str), &str> = placement
        .held
        .iter()
        .map(|h| ((h.service.as_str(), h.address.as_str()), h.replica.as_str()))
        .collect();
    render(reports, Some(&holders))
}

/// The table, with the replica column if `holders` is given.
fn render(reports: &[ServiceReport], holders: Option<&HashMap<(&str, &str), &str>>) -> String {
    let mut header: Vec<String> = HEADER.iter().map(|h| (*h).to_owned()).collect();
    if holders.is_some() {
        header.insert(2, String::from("REPLICA"));
    }
    let mut rows: Vec<Vec<String>> = reports
        .iter()
        .flat_map(|service| {
            service.instances.iter().map(|report| {
                let status = &report.status;
                let i = &status.instance;
                let metadata = match format_metadata(&i.metadata) {
                    m if m.is_empty() => "-".to_owned(),
                    m => m,
                };
                let mut row = vec![
                    field(&service.name).into_owned(),
                    field(&i.address).into_owned(),
                    match report.registered_weight {
                        own if own == i.weight => i.weight.to_string(),
                        own => format!("{} (own {own})", i.weight),
                    },
                    state(status.state).to_owned(),
                    format_age(Duration::from_millis(status.heartbeat_age_ms)),
                    i.incarnation.to_string(),
                    metadata,
                ];
                if let Some(holders) = holders {
                    let held = holders.get(&(service.name.as_str(), i.address.as_str()));
                    row.insert(
                        2,
                        held.map_or_else(|| "-".to_owned(), |r| field(r).into_owned()),
                    );
                }
                row
            })
        })
        .collect();
    rows.sort_by(|a, b| {
        a[0].cmp(&b[0])
            .then_with(|| super::address_order(&a[1], &b[1]))
    });
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut table = String::new();
    push_row(&mut table, &header, &widths);
    for row in &rows {
        push_row(&mut table, row, &widths);
    }
    table
}

/// Appends `row` to `table`, each cell padded to its column's width.
fn push_row(table: &mut String, row: &[String], widths: &[usize]) {
    let mut line = String::new();
    for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
        if i > 0 {
            line.push_str(GAP);
        }
        line.push_str(cell);
        let pad = width.saturating_sub(cell.chars().count());
        line.extend(std::iter::repeat_n(' ', pad));
    }
    table.push_str(line.trim_end());
    table.push('\n');
}

fn state(state: InstanceState) -> &'static str {
    match state {
        InstanceState::Up => "up",
        InstanceState::Late => "late",
    }
}

/// `age` for a person, to two significant units at most: `350ms` below a second, `2.1s` below ten seconds
/// (tenths cut, not rounded), `42s` below a minute, then `3m05s`, `2h03m`, `4d07h`.
///
/// ```
/// use std::time::Duration;
/// use rpc_registry::cli::format_age;
/// assert_eq!(format_age(Duration::from_millis(350)), "350ms");
/// assert_eq!(format_age(Duration::from_millis(2150)), "2.1s");
/// assert_eq!(format_age(Duration::from_secs(185)), "3m05s");
/// ```
pub fn format_age(age: Duration) -> String {
    let ms = age.as_millis();
    let s = age.as_secs();
    match () {
        _ if ms < 1_000 => format!("{ms}ms"),
        _ if s < 10 => format!("{s}.{}s", (ms % 1_000) / 100),
        _ if s < 60 => format!("{s}s"),
        _ if s < 3_600 => format!("{}m{:02}s", s / 60, s % 60),
        _ if s < 86_400 => format!("{}h{:02}m", s / 3_600, s % 3_600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3_600),
    }
}

/// `metadata` as `k=v,k=v`, in key order; empty if there is none. Keys and values are escaped and cut to
/// [`super::MAX_FIELD_CHARS`], the whole to [`super::MAX_LINE_CHARS`].
///
/// ```
/// let metadata = [("zone".to_owned(), "a\nCalc  127.0.0.1:1".to_owned())].into();
/// assert_eq!(rpc_registry::cli::format_metadata(&metadata), "zone=a\\nCalc  127.0.0.1:1");
/// ```
pub fn format_metadata(metadata: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = metadata
        .iter()
        .map(|(k, v)| format!("{}={}", field(k), field(v)))
        .collect();
    escape(&pairs.join(","), MAX_LINE_CHARS).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Instance, InstanceStatus, ServiceStatus};

    fn status(address: &str, weight: u32, state: InstanceState, age_ms: u64) -> InstanceStatus {
        InstanceStatus {
            instance: Instance {
                service: String::new(),
                address: address.to_owned(),
                weight,
                metadata: BTreeMap::new(),
                lease: 1,
                incarnation: 1,
            },
            state,
            heartbeat_age_ms: age_ms,
        }
    }

    /// The report of a service whose instances weigh what they registered with.
    fn service(name: &str, instances: Vec<InstanceStatus>) -> ServiceReport {
        ServiceReport::from(ServiceStatus {
            name: name.to_owned(),
            revision: 1,
            instances,
        })
    }

    #[test]
    fn the_table_is_sorted_by_service_then_address_with_aligned_columns() {
        let mut tagged = status("127.0.0.1:7002", 1, InstanceState::Late, 2_150);
        tagged.instance.metadata = [("zone", "b"), ("ver", "2")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into();
        tagged.instance.incarnation = 12;
        let statuses = [
            service(
                "Calc",
                vec![status("127.0.0.1:10000", 5, InstanceState::Up, 40), tagged],
            ),
            service(
                "Billing",
                vec![status(
                    "billing.internal:80",
                    100,
                    InstanceState::Up,
                    61_000,
                )],
            ),
        ];
        let expected = "\
SERVICE   ADDRESS               WEIGHT   STATE   HEARTBEAT   INCARNATION   METADATA
Billing   billing.internal:80   100      up      1m01s       1             -
Calc      127.0.0.1:7002        1        late    2.1s        12            ver=2,zone=b
Calc      127.0.0.1:10000       5        up      40ms        1             -
";
        assert_eq!(render_table(&statuses), expected);
    }

    #[test]
    fn a_weight_an_operator_set_shows_the_instance_s_own_beside_it() {
        let mut report = service(
            "Calc",
            vec![status("127.0.0.1:7001", 0, InstanceState::Up, 40)],
        );
        report.instances[0].registered_weight = 5;
        let table = render_table(&[report]);
        assert_eq!(
            table.lines().nth(1),
            Some("Calc      127.0.0.1:7001   0 (own 5)   up      40ms        1             -")
        );
    }

    #[test]
    fn a_replicated_registry_s_table_names_the_replica_of_each_instance() {
        let statuses = vec![service(
            "Calc",
            vec![
                status("127.0.0.1:7001", 1, InstanceState::Up, 0),
                status("127.0.0.1:7002", 1, InstanceState::Up, 0),
            ],
        )];
        let placement = Placement {
            store: "etcd".into(),
            replica: Some("r1".into()),
            replicas: Vec::new(),
            held: vec![crate::api::Held {
                service: "Calc".into(),
                address: "127.0.0.1:7001".into(),
                incarnation: 1,
                replica: "r\u{1b}[2J2".into(),
            }],
        };
        let table = render_table_with_replicas(&statuses, &placement);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].starts_with("SERVICE   ADDRESS          REPLICA     WEIGHT"),
            "{table}"
        );
        assert!(
            lines[1].contains("127.0.0.1:7001   r\\x1b[2J2   1"),
            "escaped: {table}"
        );
        assert!(
            lines[2].contains("127.0.0.1:7002   -           1"),
            "{table}"
        );
    }

    #[test]
    fn a_table_without_instances_is_its_header() {
        assert_eq!(
            render_table(&[service("Calc", vec![])]),
            "SERVICE   ADDRESS   WEIGHT   STATE   HEARTBEAT   INCARNATION   METADATA\n"
        );
    }

    #[test]
    fn wide_cells_widen_their_column_counting_characters_not_bytes() {
        let statuses = [service(
            "Zählung",
            vec![status("127.0.0.1:1", 1, InstanceState::Up, 0)],
        )];
        let table = render_table(&statuses);
        let lines: Vec<&str> = table.lines().collect();
        let column = |line: &str, at: &str| line.find(at).map(|b| line[..b].chars().count());
        assert_eq!(column(lines[0], "ADDRESS"), column(lines[1], "127.0.0.1:1"));
        assert_eq!(
            column(lines[0], "ADDRESS"),
            Some("SERVICE".len() + GAP.len())
        );
    }

    #[test]
    fn hostile_names_and_metadata_stay_on_their_row_and_clear_nothing() {
        let mut hostile = status("127.0.0.1:7001\x1b]0;owned\x07", 1, InstanceState::Up, 0);
        hostile.instance.metadata = [
            (
                "zone".to_owned(),
                "a\nCalc   127.0.0.1:9   9   up".to_owned(),
            ),
            ("\u{202e}key".to_owned(), "x".repeat(10_000)),
        ]
        .into();
        let table = render_table(&[service("Calc\x1b[2J\x1b[H", vec![hostile])]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2, "{table}");
        assert!(
            !table.chars().any(|c| c.is_control() && c != '\n'),
            "{table:?}"
        );
        assert!(!table.contains('\u{202e}'), "{table:?}");
        assert!(
            lines[1].starts_with("Calc\\x1b[2J\\x1b[H   127.0.0.1:7001\\x1b]0;owned\\x07   1"),
            "{table}"
        );
        assert!(lines[1].contains("zone=a\\nCalc   127.0.0.1:9"), "{table}");
        assert!(lines[1].contains("\\u{202e}key="), "{table}");
        // The 10,000-character value is cut at its bound.
        let value = lines[1].split("key=").nth(1).unwrap();
        assert_eq!(
            value,
            format!("{}…", "x".repeat(super::super::MAX_FIELD_CHARS))
        );
    }

    #[test]
    fn ages_read_as_milliseconds_tenths_of_seconds_then_larger_units() {
        for (ms, text) in [
            (0, "0ms"),
            (350, "350ms"),
            (999, "999ms"),
            (1_000, "1.0s"),
            (2_150, "2.1s"),
            (9_999, "9.9s"),
            (10_000, "10s"),
            (59_999, "59s"),
            (60_000, "1m00s"),
            (185_000, "3m05s"),
            (3_600_000, "1h00m"),
            (7_380_000, "2h03m"),
            (86_400_000, "1d00h"),
            (370_800_000, "4d07h"),
        ] {
            assert_eq!(format_age(Duration::from_millis(ms)), text, "{ms} ms");
        }
    }

    #[test]
    fn metadata_reads_as_key_value_pairs_in_key_order() {
        let metadata: BTreeMap<String, String> = [("zone", "a"), ("version", "1.2")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into();
        assert_eq!(format_metadata(&metadata), "version=1.2,zone=a");
        assert_eq!(format_metadata(&BTreeMap::new()), "");
    }
}
