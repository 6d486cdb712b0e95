//! The admin scope's site listing: which of the sites an admin may see match a listing's search
//! and filter, one page of them in listing order (name, then site key, byte order), and how many
//! match in all.
//!
//! It must stay fast at a million sites, so no query reads every row. Three kinds of listing:
//!
//! - **In order** (a platform admin without a search, or with a 1-2 character prefix): the
//!   listing is one or more ranges of the `sites_by_name` index, walked in order from the page's
//!   start; a page reads about as many index entries as it shows.
//! - **Candidates** (a search of 3 or more characters, or a site manager, whose sites are listed
//!   in `admin_sites`): up to [`CANDIDATES`] matching sites are looked up through the text index
//!   (SQLite's FTS5 `sites_search`, PostgreSQL's trigram indexes) or the assignments, and when that
//!   is all of them they are sorted here and paged. Beyond, the matches are common: the page walks
//!   [`WALK_WINDOW`] sites of the listing order from its start and checks each, which fills it
//!   unless the matches lie elsewhere in that order (a word that starts the names of 1% of the
//!   sites, all sorted together). Then, or when the candidates already show no match in that
//!   window, all matches after the start are sorted by the database: the one cost that grows
//!   with the number of matches (docs/performance.md, "Site listing at a million sites").
//! - **The total** is counted up to [`CANDIDATES`], so exact up to [`EXACT_TOTAL_LIMIT`];
//!   beyond, it is estimated from a sample ([`estimate`]).
//!
//! The SQL differs between backends (FTS5 `MATCH` or `ILIKE` over trigram indexes, SQLite's
//! default byte order or PostgreSQL's `COLLATE "C"`), so it is written here as text with its bound
//! values ([`Statement`]), per [`Dialect`], rather than with diesel's query builder.

use std::cmp::Ordering;
use std::collections::HashMap;

use diesel::prelude::*;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::sql_types::{BigInt, Bool, Nullable, Text};

use super::schema::{sites, tokens};
use super::sites::SiteRow;
use super::{with_connection, Store, StoreError};
use crate::domain::admin::Admin;
use crate::domain::site::{Site, SiteSummary};
use crate::domain::site_search::{
    NameRange, PageStart, SiteListing, SitePage, SitePosition, SiteSearch, SiteTotal,
    EXACT_TOTAL_LIMIT,
};

/// Matches counted, or looked up as candidates, at most: one more than an exact total may be.
const CANDIDATES: i64 = EXACT_TOTAL_LIMIT + 1;
/// Sites of the listing order a page of common matches checks before it gives up walking.
const WALK_WINDOW: i64 = 20_000;
/// An estimate checks about this many sites, in [`SAMPLE_WINDOWS`] runs of consecutive ids.
const SAMPLE_SITES: i64 = 10_000;
const SAMPLE_WINDOWS: i64 = 20;

impl Store {
    /// One page of the sites `admin` may see that match `listing`, in listing order, the total,
    /// and where the next page starts.
    pub fn site_page(&self, admin: &Admin, listing: &SiteListing) -> Result<SitePage, StoreError> {
        let scope = if admin.manages_every_site() {
            Scope::Every
        } else {
            Scope::Assigned(admin.id)
        };
        let filter = Filter::new(scope, listing);
        with_connection!(self, |conn| page(conn, &filter, listing))
    }
}

/// Which sites the admin may see.
#[derive(Debug, Clone, Copy)]
enum Scope {
    Every,
    /// A site manager's: those `admin_sites` assigns to this admin id.
    Assigned(i64),
}

/// What the search asks of a site's name or key.
#[derive(Debug)]
enum Matching {
    /// Every site: no search, or a prefix every site key starts with.
    Everything,
    /// Names in these ranges (a 1-2 character prefix in each of its cases).
    Names(Vec<NameRange>),
    /// The text anywhere in the name or the key, case-insensitively.
    Fragment(String),
}

/// Everything a site must be to be listed.
#[derive(Debug)]
struct Filter {
    scope: Scope,
    enabled: Option<bool>,
    matching: Matching,
}

impl Filter {
    fn new(scope: Scope, listing: &SiteListing) -> Self {
        let matching = match &listing.search {
            None => Matching::Everything,
            Some(search) if search.matches_every_site_key() => Matching::Everything,
            Some(SiteSearch::Fragment(text)) => Matching::Fragment(text.clone()),
            Some(prefix @ SiteSearch::Prefix(_)) => {
                Matching::Names(prefix.name_ranges().unwrap_or_default())
            }
        };
        Self {
            scope,
            enabled: listing.enabled,
            matching,
        }
    }

    /// The ranges of the listing order that hold exactly the matching sites, when there are
    /// such ranges (every site visible, no fragment).
    fn ordered_ranges(&self) -> Option<Vec<NameRange>> {
        match (&self.scope, &self.matching) {
            (Scope::Every, Matching::Everything) => Some(vec![NameRange {
                from: String::new(),
                until: None,
            }]),
            (Scope::Every, Matching::Names(ranges)) => Some(ranges.clone()),
            _ => None,
        }
    }

    /// Appends ` AND …` for the scope, the enabled filter and the search, checked (`check`) on
    /// each row of `sites` (which may name a subquery).
    fn push_checks(&self, statement: &mut Statement, check: Check) {
        if let Scope::Assigned(admin_id) = self.scope {
            statement
                .sql(" AND sites.id IN (SELECT site_id FROM admin_sites WHERE admin_id = ")
                .bind(admin_id)
                .sql(")");
        }
        self.push_enabled(statement);
        self.push_matching(statement, check);
    }

    fn push_enabled(&self, statement: &mut Statement) {
        if let Some(enabled) = self.enabled {
            statement.sql(" AND sites.enabled = ").bind(enabled);
        }
    }

    fn push_matching(&self, statement: &mut Statement, check: Check) {
        match &self.matching {
            Matching::Everything => {}
            Matching::Names(ranges) => {
                statement.sql(" AND (");
                statement.push_joined(ranges, " OR ", |statement, range| {
                    statement.sql("(");
                    push_range_condition(statement, range);
                    statement.sql(")");
                });
                statement.sql(")");
            }
            Matching::Fragment(text) => push_fragment(statement, text, check),
        }
    }

    /// `SELECT id, name, site_key FROM … WHERE …` of every matching site, starting from the
    /// index that narrows them most: a site manager's assignments, else the text index.
    fn push_candidates(&self, statement: &mut Statement) {
        statement.sql("SELECT sites.id, sites.name, sites.site_key");
        match (self.scope, &self.matching, statement.dialect) {
            // Each assigned site looked up by id. (A join left to PostgreSQL's planner read every
            // site for a manager of 5,000 of them, to hash-join them with the assignments.)
            (Scope::Assigned(admin_id), _, Dialect::Sqlite) => {
                // The CROSS JOIN keeps the assignments as the outer loop.
                statement
                    .sql(
                        " FROM admin_sites CROSS JOIN sites ON sites.id = admin_sites.site_id \
                         WHERE admin_sites.admin_id = ",
                    )
                    .bind(admin_id);
                self.push_enabled(statement);
                self.push_matching(statement, Check::Row);
            }
            (Scope::Assigned(admin_id), _, Dialect::Postgres) => {
                statement
                    .sql(
                        " FROM sites WHERE sites.id = ANY (ARRAY (SELECT site_id FROM admin_sites \
                         WHERE admin_id = ",
                    )
                    .bind(admin_id)
                    .sql("))");
                self.push_enabled(statement);
                self.push_matching(statement, Check::Row);
            }
            (Scope::Every, Matching::Fragment(text), Dialect::Sqlite) => {
                statement
                    .sql(
                        " FROM sites_search CROSS JOIN sites ON sites.id = sites_search.rowid \
                         WHERE sites_search MATCH ",
                    )
                    .bind(fts5_phrase(text));
                self.push_enabled(statement);
            }
            // PostgreSQL's planner finds the trigram indexes for the ILIKE itself.
            (Scope::Every, ..) => {
                statement.sql(" FROM sites WHERE TRUE");
                self.push_checks(statement, Check::Index);
            }
        }
    }
}

/// The backend's SQL for what differs between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// `sites.name` as the listing compares it: byte order (SQLite's default, PostgreSQL's "C").
    fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sites.name",
            Dialect::Postgres => "sites.name COLLATE \"C\"",
        }
    }

    /// The listing order, as an ORDER BY list and a row value.
    fn order(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sites.name, sites.site_key",
            Dialect::Postgres => "sites.name COLLATE \"C\", sites.site_key COLLATE \"C\"",
        }
    }
}

/// A value bound to a statement.
#[derive(Debug)]
enum Bind {
    Text(String),
    Bool(bool),
    BigInt(i64),
}

impl From<String> for Bind {
    fn from(value: String) -> Self {
        Bind::Text(value)
    }
}

impl From<&str> for Bind {
    fn from(value: &str) -> Self {
        Bind::Text(value.to_string())
    }
}

impl From<bool> for Bind {
    fn from(value: bool) -> Self {
        Bind::Bool(value)
    }
}

impl From<i64> for Bind {
    fn from(value: i64) -> Self {
        Bind::BigInt(value)
    }
}

/// SQL text with its placeholders written in the dialect's syntax, and the values they bind.
#[derive(Debug)]
struct Statement {
    dialect: Dialect,
    text: String,
    binds: Vec<Bind>,
}

impl Statement {
    fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            text: String::new(),
            binds: Vec::new(),
        }
    }

    fn sql(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Each item as `push` writes it, with `separator` between them. (A list that starts with a
    /// constant, `FALSE OR …`, would keep SQLite from using an index for any of the items.)
    fn push_joined<T>(
        &mut self,
        items: impl IntoIterator<Item = T>,
        separator: &str,
        mut push: impl FnMut(&mut Self, T),
    ) {
        for (index, item) in items.into_iter().enumerate() {
            if index > 0 {
                self.sql(separator);
            }
            push(self, item);
        }
    }

    fn bind(&mut self, value: impl Into<Bind>) -> &mut Self {
        self.binds.push(value.into());
        match self.dialect {
            Dialect::Sqlite => self.text.push('?'),
            Dialect::Postgres => self.text.push_str(&format!("${}", self.binds.len())),
        }
        self
    }
}

/// ` AND (name, site_key) > (…)`: only sites after `position` in listing order.
fn push_after(statement: &mut Statement, position: Option<&SitePosition>) {
    if let Some(position) = position {
        let order = statement.dialect.order();
        statement
            .sql(" AND (")
            .sql(order)
            .sql(") > (")
            .bind(position.name.as_str())
            .sql(", ")
            .bind(position.site_key.as_str())
            .sql(")");
    }
}

/// ` ORDER BY name, site_key LIMIT wanted`: the first sites in listing order.
fn push_order(statement: &mut Statement, wanted: i64) {
    let order = statement.dialect.order();
    statement
        .sql(" ORDER BY ")
        .sql(order)
        .sql(" LIMIT ")
        .bind(wanted);
}

/// ` AND name >= … AND name < …`; nothing for the whole listing order.
fn push_range(statement: &mut Statement, range: &NameRange) {
    if !range.from.is_empty() || range.until.is_some() {
        statement.sql(" AND ");
        push_range_condition(statement, range);
    }
}

/// `name >= … AND name < …`, either bound left out when the range has none (and `TRUE` when it
/// has neither).
fn push_range_condition(statement: &mut Statement, range: &NameRange) {
    let name = statement.dialect.name();
    let mut bounds = Vec::new();
    if !range.from.is_empty() {
        bounds.push((" >= ", range.from.as_str()));
    }
    if let Some(until) = &range.until {
        bounds.push((" < ", until.as_str()));
    }
    if bounds.is_empty() {
        statement.sql("TRUE");
    }
    statement.push_joined(bounds, " AND ", |statement, (comparison, bound)| {
        statement.sql(name).sql(comparison).bind(bound);
    });
}

/// ` AND (…)`: `text` anywhere in the name or the key, case-insensitively. `Check::Row` checks
/// it on each row read anyway; `Check::Index` (PostgreSQL only) in a form its trigram indexes
/// serve, to find the matches.
///
/// SQLite compares with `lower()`, which every pooled connection replaces with Rust's Unicode
/// `to_lowercase` (`SqlitePragmas`); its text index folds case with FTS5's Unicode case folding,
/// which agrees with it but for a few letters (a dotted capital I). PostgreSQL's `ILIKE` folds as
/// its `lower()` does; on rows read anyway, `strpos` over `lower()` is the faster of the two.
fn push_fragment(statement: &mut Statement, text: &str, check: Check) {
    match (statement.dialect, check) {
        (Dialect::Sqlite, _) => {
            let folded = text.to_lowercase();
            statement
                .sql(" AND (instr(lower(sites.name), ")
                .bind(folded.as_str())
                .sql(") > 0 OR instr(lower(sites.site_key), ")
                .bind(folded)
                .sql(") > 0)");
        }
        (Dialect::Postgres, Check::Row) => {
            statement
                .sql(" AND (strpos(lower(sites.name), lower(")
                .bind(text)
                .sql(")) > 0 OR strpos(lower(sites.site_key), lower(")
                .bind(text)
                .sql(")) > 0)");
        }
        (Dialect::Postgres, Check::Index) => {
            let pattern = contains_pattern(text);
            statement
                .sql(" AND (sites.name ILIKE ")
                .bind(pattern.as_str())
                .sql(" OR sites.site_key ILIKE ")
                .bind(pattern)
                .sql(")");
        }
    }
}

/// How a search is checked: on rows read anyway, or so as to find them through an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Row,
    Index,
}

/// `%text%`, with LIKE's wildcards and its escape character escaped so they match themselves.
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// An FTS5 phrase: with the trigram tokenizer, it matches `text` as a substring of a column.
/// Inside double quotes every character is literal but the quote, which is doubled.
fn fts5_phrase(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// A site's id and its place in the listing order.
#[derive(Debug, QueryableByName)]
struct Placed {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    site_key: String,
}

impl Placed {
    fn order(&self, other: &Self) -> Ordering {
        (self.name.as_str(), self.site_key.as_str())
            .cmp(&(other.name.as_str(), other.site_key.as_str()))
    }

    fn is_after(&self, position: &SitePosition) -> bool {
        (self.name.as_str(), self.site_key.as_str())
            > (position.name.as_str(), position.site_key.as_str())
    }

    fn position(&self) -> SitePosition {
        SitePosition {
            name: self.name.clone(),
            site_key: self.site_key.clone(),
        }
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct IdSpan {
    #[diesel(sql_type = Nullable<BigInt>)]
    first: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    last: Option<i64>,
}

/// The listing's queries on one backend's connection.
trait ListingQueries {
    const DIALECT: Dialect;
    fn placed(&mut self, statement: &Statement) -> Result<Vec<Placed>, StoreError>;
    fn count(&mut self, statement: &Statement) -> Result<i64, StoreError>;
    /// The lowest and highest site id; `None` without sites.
    fn id_span(&mut self) -> Result<Option<(i64, i64)>, StoreError>;
    /// The sites with these ids and their token counts, in the order of `ids`.
    fn summaries(&mut self, ids: &[i64]) -> Result<Vec<SiteSummary>, StoreError>;
}

macro_rules! impl_listing_queries {
    ($connection:ty, $backend:ty, $dialect:expr) => {
        impl ListingQueries for $connection {
            const DIALECT: Dialect = $dialect;

            fn placed(&mut self, statement: &Statement) -> Result<Vec<Placed>, StoreError> {
                Ok(boxed::<$backend>(statement).load(self)?)
            }

            fn count(&mut self, statement: &Statement) -> Result<i64, StoreError> {
                Ok(boxed::<$backend>(statement).get_result::<Count>(self)?.n)
            }

            fn id_span(&mut self) -> Result<Option<(i64, i64)>, StoreError> {
                let span = diesel::sql_query(
                    "SELECT (SELECT min(id) FROM sites) AS first, \
                     (SELECT max(id) FROM sites) AS last",
                )
                .get_result::<IdSpan>(self)?;
                Ok(span.first.zip(span.last))
            }

            fn summaries(&mut self, ids: &[i64]) -> Result<Vec<SiteSummary>, StoreError> {
                let mut rows: HashMap<i64, SiteRow> = sites::table
                    .filter(sites::id.eq_any(ids))
                    .select(SiteRow::as_select())
                    .load::<SiteRow>(self)?
                    .into_iter()
                    .map(|row| (row.id, row))
                    .collect();
                // Retired tokens hold no slot and are not counted.
                let counts: HashMap<i64, i64> = tokens::table
                    .filter(tokens::site_id.eq_any(ids))
                    .filter(tokens::slot.is_not_null())
                    .group_by(tokens::site_id)
                    .select((tokens::site_id, diesel::dsl::count_star()))
                    .load::<(i64, i64)>(self)?
                    .into_iter()
                    .collect();
                // Sites are never deleted, so every id found a moment ago is there.
                Ok(ids
                    .iter()
                    .filter_map(|id| rows.remove(id))
                    .map(|row| SiteSummary {
                        token_count: counts.get(&row.id).copied().unwrap_or(0),
                        site: Site::from(row),
                    })
                    .collect())
            }
        }
    };
}

impl_listing_queries!(
    diesel::sqlite::SqliteConnection,
    diesel::sqlite::Sqlite,
    Dialect::Sqlite
);
impl_listing_queries!(diesel::pg::PgConnection, diesel::pg::Pg, Dialect::Postgres);

/// `statement` as a diesel query with its values bound.
fn boxed<DB>(statement: &Statement) -> BoxedSqlQuery<'_, DB, SqlQuery>
where
    DB: diesel::backend::Backend
        + diesel::sql_types::HasSqlType<Text>
        + diesel::sql_types::HasSqlType<Bool>
        + diesel::sql_types::HasSqlType<BigInt>,
    for<'a> &'a str: diesel::serialize::ToSql<Text, DB>,
    bool: diesel::serialize::ToSql<Bool, DB>,
    i64: diesel::serialize::ToSql<BigInt, DB>,
{
    let mut query = diesel::sql_query(statement.text.as_str()).into_boxed::<DB>();
    for bind in &statement.binds {
        query = match bind {
            Bind::Text(value) => query.bind::<Text, _>(value.as_str()),
            Bind::Bool(value) => query.bind::<Bool, _>(*value),
            Bind::BigInt(value) => query.bind::<BigInt, _>(*value),
        };
    }
    query
}

fn page<C: ListingQueries>(
    conn: &mut C,
    filter: &Filter,
    listing: &SiteListing,
) -> Result<SitePage, StoreError> {
    let (after, skip) = match &listing.start {
        PageStart::Offset(offset) => (None, *offset),
        PageStart::After(position) => (Some(position), 0),
    };
    // One more than the page shows: whether it exists says whether there is a next page.
    let wanted = skip + listing.limit + 1;
    let (matching, placed) = match filter.ordered_ranges() {
        Some(ranges) => (
            count_in_ranges(conn, filter, &ranges)?,
            walk_ranges(conn, filter, &ranges, after, wanted)?,
        ),
        None if text_index_count(conn, filter)? > Some(EXACT_TOTAL_LIMIT) => {
            (CANDIDATES, walk_or_sort(conn, filter, after, wanted, &[])?)
        }
        None => {
            let mut candidates = conn.placed(&candidates(C::DIALECT, filter, None))?;
            let found = candidates.len() as i64;
            if found <= EXACT_TOTAL_LIMIT {
                candidates.sort_unstable_by(Placed::order);
                candidates.retain(|site| after.is_none_or(|position| site.is_after(position)));
                candidates.truncate(wanted as usize);
                (found, candidates)
            } else {
                (
                    found,
                    walk_or_sort(conn, filter, after, wanted, &candidates)?,
                )
            }
        }
    };
    let total = if matching <= EXACT_TOTAL_LIMIT {
        SiteTotal {
            count: matching,
            exact: true,
        }
    } else {
        SiteTotal {
            count: estimate(conn, filter)?,
            exact: false,
        }
    };
    let mut shown: Vec<Placed> = placed.into_iter().skip(skip as usize).collect();
    let next = if shown.len() as i64 > listing.limit {
        shown.truncate(listing.limit as usize);
        shown.last().map(Placed::position)
    } else {
        None
    };
    let ids: Vec<i64> = shown.iter().map(|site| site.id).collect();
    Ok(SitePage {
        sites: conn.summaries(&ids)?,
        total,
        next,
    })
}

/// On SQLite, for a search with nothing else to check, how many sites the text index finds, up
/// to [`CANDIDATES`]: counted in the index alone, much faster than reading those sites (which
/// need not be read when there are more than an exact total). `None` otherwise: PostgreSQL
/// checks each match against its row anyway (trigram indexes find a superset).
fn text_index_count<C: ListingQueries>(
    conn: &mut C,
    filter: &Filter,
) -> Result<Option<i64>, StoreError> {
    let (Dialect::Sqlite, Scope::Every, None, Matching::Fragment(text)) =
        (C::DIALECT, filter.scope, filter.enabled, &filter.matching)
    else {
        return Ok(None);
    };
    let mut statement = Statement::new(C::DIALECT);
    statement
        .sql("SELECT count(*) AS n FROM (SELECT 1 FROM sites_search WHERE sites_search MATCH ")
        .bind(fts5_phrase(text))
        .sql(" LIMIT ")
        .bind(CANDIDATES)
        .sql(") AS found");
    conn.count(&statement).map(Some)
}

/// The candidates statement (see the module documentation): every matching site, or (`sorted`)
/// the first ones after a position in listing order, sorted by the database.
fn candidates(
    dialect: Dialect,
    filter: &Filter,
    sorted: Option<(Option<&SitePosition>, i64)>,
) -> Statement {
    let mut statement = Statement::new(dialect);
    match sorted {
        None => {
            filter.push_candidates(&mut statement);
            statement.sql(" LIMIT ").bind(CANDIDATES);
        }
        // SQLite's CROSS JOIN already starts from the text index or the assignments.
        Some((after, wanted)) if dialect == Dialect::Sqlite => {
            filter.push_candidates(&mut statement);
            push_after(&mut statement, after);
            push_order(&mut statement, wanted);
        }
        Some((after, wanted)) => {
            // Materialized, so that PostgreSQL finds the matches through their indexes and
            // sorts them, rather than walk the listing order (which is what failed).
            statement.sql("WITH matches AS MATERIALIZED (");
            filter.push_candidates(&mut statement);
            push_after(&mut statement, after);
            statement.sql(") SELECT id, name, site_key FROM matches AS sites");
            push_order(&mut statement, wanted);
        }
    }
    statement
}

/// How many sites lie in `ranges` (and pass the enabled filter), up to [`CANDIDATES`].
fn count_in_ranges<C: ListingQueries>(
    conn: &mut C,
    filter: &Filter,
    ranges: &[NameRange],
) -> Result<i64, StoreError> {
    let mut counted = 0;
    for range in ranges {
        let mut statement = Statement::new(C::DIALECT);
        statement.sql("SELECT count(*) AS n FROM (SELECT 1 FROM sites WHERE TRUE");
        push_range(&mut statement, range);
        filter.push_enabled(&mut statement);
        statement
            .sql(" LIMIT ")
            .bind(CANDIDATES - counted)
            .sql(") AS counted");
        counted += conn.count(&statement)?;
        if counted >= CANDIDATES {
            break;
        }
    }
    Ok(counted)
}

/// The first `wanted` sites after `after` in `ranges`, which are in listing order.
fn walk_ranges<C: ListingQueries>(
    conn: &mut C,
    filter: &Filter,
    ranges: &[NameRange],
    after: Option<&SitePosition>,
    wanted: i64,
) -> Result<Vec<Placed>, StoreError> {
    let mut placed = Vec::new();
    for range in ranges {
        let missing = wanted - placed.len() as i64;
        if missing == 0 {
            break;
        }
        let mut statement = Statement::new(C::DIALECT);
        statement.sql("SELECT sites.id, sites.name, sites.site_key FROM sites WHERE TRUE");
        push_range(&mut statement, range);
        push_after(&mut statement, after);
        filter.push_enabled(&mut statement);
        push_order(&mut statement, missing);
        placed.extend(conn.placed(&statement)?);
    }
    Ok(placed)
}

/// The first `wanted` matching sites after `after`, when more than [`EXACT_TOTAL_LIMIT`] match:
/// the next [`WALK_WINDOW`] sites of the listing order, each checked; if they hold too few and
/// more sites follow, every match after `after`, sorted.
///
/// `sample` holds some of the matches (the candidates found before, in the order of an index
/// other than the listing's), if any. When none of them falls in the window, the matches lie
/// elsewhere in the listing order (a word that starts the names of many sites, all sorted
/// together), the walk would most likely come back short, and the sort starts at once.
fn walk_or_sort<C: ListingQueries>(
    conn: &mut C,
    filter: &Filter,
    after: Option<&SitePosition>,
    wanted: i64,
    sample: &[Placed],
) -> Result<Vec<Placed>, StoreError> {
    // Computed once, when it is needed.
    let mut window_end = None;
    if !sample.is_empty() {
        let end = last_in_window(conn, after)?;
        let in_window = |site: &Placed| {
            after.is_none_or(|position| site.is_after(position))
                && end.as_ref().is_none_or(|end| site.order(end).is_le())
        };
        if !sample.iter().any(in_window) {
            return conn.placed(&candidates(C::DIALECT, filter, Some((after, wanted))));
        }
        window_end = Some(end);
    }
    // The window is a subquery with its own LIMIT, so neither planner can swap the walk for a
    // search of the text index (which, for text this common, would find most sites).
    let mut walk = Statement::new(C::DIALECT);
    walk.sql(
        "SELECT sites.id, sites.name, sites.site_key FROM (SELECT sites.id, sites.name, \
         sites.site_key, sites.enabled FROM sites WHERE TRUE",
    );
    push_after(&mut walk, after);
    push_order(&mut walk, WALK_WINDOW);
    walk.sql(") AS sites WHERE TRUE");
    filter.push_checks(&mut walk, Check::Row);
    push_order(&mut walk, wanted);
    let walked = conn.placed(&walk)?;
    if walked.len() as i64 == wanted {
        return Ok(walked);
    }
    let end = match window_end {
        Some(end) => end,
        None => last_in_window(conn, after)?,
    };
    if end.is_none() {
        // The window reached the last site: it held every match.
        return Ok(walked);
    }
    conn.placed(&candidates(C::DIALECT, filter, Some((after, wanted))))
}

/// The [`WALK_WINDOW`]th site after `after`, where a walk stops; `None` when fewer follow.
fn last_in_window<C: ListingQueries>(
    conn: &mut C,
    after: Option<&SitePosition>,
) -> Result<Option<Placed>, StoreError> {
    let mut statement = Statement::new(C::DIALECT);
    statement.sql("SELECT sites.id, sites.name, sites.site_key FROM sites WHERE TRUE");
    push_after(&mut statement, after);
    push_order(&mut statement, 1);
    statement.sql(" OFFSET ").bind(WALK_WINDOW - 1);
    Ok(conn.placed(&statement)?.pop())
}

/// An estimate of how many sites match, once more than [`EXACT_TOTAL_LIMIT`] do: the matches
/// among about [`SAMPLE_SITES`] sites in [`SAMPLE_WINDOWS`] runs of consecutive ids spread evenly
/// from the lowest id to the highest, scaled up to all of them. Never below [`CANDIDATES`] (more
/// than that many were found).
///
/// The same on both backends, so they agree, and cheap: about 10,000 rows read by primary key and
/// checked, some milliseconds, whatever the number of sites. Site ids are dense (sites are never
/// deleted), so the id span counts the sites, and spreading the runs over it keeps sites created
/// together (an import of one chain's shops) from skewing the sample. PostgreSQL's planner
/// estimate would cost nothing, but it comes from statistics only as fresh as the last
/// `ANALYZE`, and a pattern's share is guessed from a histogram of 100 names; SQLite has no
/// statistics to offer for a text search at all.
fn estimate<C: ListingQueries>(conn: &mut C, filter: &Filter) -> Result<i64, StoreError> {
    let Some((first, last)) = conn.id_span()? else {
        return Ok(CANDIDATES);
    };
    let span = last - first + 1;
    let windows: Vec<(i64, i64)> = if span <= 2 * SAMPLE_SITES {
        vec![(first, last)]
    } else {
        let width = SAMPLE_SITES / SAMPLE_WINDOWS;
        let stride = span / SAMPLE_WINDOWS;
        (0..SAMPLE_WINDOWS)
            .map(|window| {
                let start = first + window * stride;
                (start, start + width - 1)
            })
            .collect()
    };
    let sampled: i64 = windows.iter().map(|(from, to)| to - from + 1).sum();
    let mut statement = Statement::new(C::DIALECT);
    statement.sql("SELECT count(*) AS n FROM sites WHERE (");
    statement.push_joined(windows, " OR ", |statement, (from, to)| {
        statement
            .sql("sites.id BETWEEN ")
            .bind(from)
            .sql(" AND ")
            .bind(to);
    });
    statement.sql(")");
    filter.push_checks(&mut statement, Check::Row);
    let hits = conn.count(&statement)?;
    let scaled = i128::from(hits) * i128::from(span) / i128::from(sampled);
    Ok(i64::try_from(scaled).unwrap_or(i64::MAX).max(CANDIDATES))
}

diesel::define_sql_function! {
    /// SQL `lower()`. SQLite's built-in folds ASCII letters only, PostgreSQL's every letter, so
    /// SQLite connections replace it with Rust's `to_lowercase` (`SqlitePragmas`): the site
    /// search then matches the same sites on both backends.
    fn lower(text: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_the_dialect() {
        for (dialect, expected) in [
            (Dialect::Sqlite, "a = ? AND b = ?"),
            (Dialect::Postgres, "a = $1 AND b = $2"),
        ] {
            let mut statement = Statement::new(dialect);
            statement.sql("a = ").bind(1).sql(" AND b = ").bind("x");
            assert_eq!(statement.text, expected);
            assert_eq!(statement.binds.len(), 2);
        }
    }

    #[test]
    fn like_wildcards_and_fts5_quotes_match_themselves() {
        assert_eq!(contains_pattern("100%_a\\b"), "%100\\%\\_a\\\\b%");
        assert_eq!(fts5_phrase("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
