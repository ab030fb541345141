//! Preprocessing transformers: scalers, Normalizer, encoders, SimpleImputer,
//! PolynomialFeatures and the identity FunctionTransformer.

use crate::data::{Column, Data, Matrix, Transform};
use crate::extract::{BResult, Obj};
use crate::value::Value;

/// Column-wise affine map `(x - sub) / div * mul + add` (StandardScaler,
/// MinMaxScaler, MaxAbsScaler, RobustScaler), with optional clipping.
#[derive(Debug, Clone)]
pub struct Affine {
    name: &'static str,
    f: usize,
    sub: Option<Vec<f64>>,
    div: Option<Vec<f64>>,
    mul: Option<Vec<f64>>,
    add: Option<Vec<f64>>,
    clip: Option<(f64, f64)>,
}

fn sized(o: &Obj, name: &str, f: &mut Option<usize>) -> BResult<Option<Vec<f64>>> {
    let a = o.opt_arr(name)?;
    if let Some(a) = &a {
        match f {
            Some(n) if *n != a.data.len() => {
                return Err(format!(
                    "{}.{name} has {} values, expected {n}",
                    o.class,
                    a.data.len()
                ))
            }
            _ => *f = Some(a.data.len()),
        }
    }
    Ok(a.map(|a| a.data))
}

impl Affine {
    /// Builds a scaler from its object.
    pub fn from_obj(o: &Obj) -> BResult<Affine> {
        let mut f = o.n_features_in();
        let mut a = Affine {
            name: "scaler",
            f: 0,
            sub: None,
            div: None,
            mul: None,
            add: None,
            clip: None,
        };
        match o.class.as_str() {
            "StandardScaler" => {
                a.name = "StandardScaler";
                a.sub = if o.bool_or("with_mean", true) {
                    sized(o, "mean_", &mut f)?
                } else {
                    None
                };
                a.div = if o.bool_or("with_std", true) {
                    sized(o, "scale_", &mut f)?
                } else {
                    None
                };
            }
            "MinMaxScaler" => {
                a.name = "MinMaxScaler";
                a.mul = sized(o, "scale_", &mut f)?;
                a.add = sized(o, "min_", &mut f)?;
                if o.bool_or("clip", false) {
                    let r = crate::extract::value_arr(&o.req("feature_range")?)?.data;
                    if r.len() == 2 {
                        a.clip = Some((r[0], r[1]));
                    }
                }
            }
            "MaxAbsScaler" => {
                a.name = "MaxAbsScaler";
                a.div = sized(o, "scale_", &mut f)?;
            }
            "RobustScaler" => {
                a.name = "RobustScaler";
                a.sub = sized(o, "center_", &mut f)?;
                a.div = sized(o, "scale_", &mut f)?;
            }
            other => return Err(format!("{other} is not a scaler")),
        }
        a.f = f
            .filter(|&f| f > 0)
            .ok_or_else(|| format!("{}: cannot tell the number of features", o.class))?;
        Ok(a)
    }
}

impl Transform for Affine {
    fn transform(&self, x: Data) -> Result<Data, String> {
        let mut m = x.into_dense(self.name)?;
        m.check_cols(self.f, self.name)?;
        for row in m.data.chunks_exact_mut(self.f) {
            for (j, v) in row.iter_mut().enumerate() {
                if let Some(s) = &self.sub {
                    *v -= s[j];
                }
                if let Some(d) = &self.div {
                    *v /= d[j];
                }
                if let Some(mu) = &self.mul {
                    *v *= mu[j];
                }
                if let Some(a) = &self.add {
                    *v += a[j];
                }
                if let Some((lo, hi)) = self.clip {
                    *v = v.clamp(lo, hi);
                }
            }
        }
        Ok(Data::Dense(m))
    }
    fn n_features_in(&self) -> Option<usize> {
        Some(self.f)
    }
    fn n_features_out(&self) -> Option<usize> {
        Some(self.f)
    }
    fn name(&self) -> &'static str {
        self.name
    }
}

/// Normalizer (l1, l2, max per row).
#[derive(Debug, Clone)]
pub struct Normalizer {
    norm: String,
    f: Option<usize>,
}

impl Normalizer {
    /// Builds from its object.
    pub fn from_obj(o: &Obj) -> BResult<Normalizer> {
        let norm = o.str_opt("norm").unwrap_or_else(|| "l2".into());
        if !matches!(norm.as_str(), "l1" | "l2" | "max") {
            return Err(format!("Normalizer norm '{norm}' is not supported"));
        }
        Ok(Normalizer {
            norm,
            f: o.n_features_in(),
        })
    }
}

impl Transform for Normalizer {
    fn transform(&self, x: Data) -> Result<Data, String> {
        let mut m = x.into_dense("Normalizer")?;
        if let Some(f) = self.f {
            m.check_cols(f, "Normalizer")?;
        }
        let cols = m.cols.max(1);
        for row in m.data.chunks_exact_mut(cols) {
            let n = match self.norm.as_str() {
                "l1" => row.iter().map(|v| v.abs()).sum::<f64>(),
                "max" => row.iter().map(|v| v.abs()).fold(0.0, f64::max),
                _ => row.iter().map(|v| v * v).sum::<f64>().sqrt(),
            };
            let n = if n == 0.0 { 1.0 } else { n };
            row.iter_mut().for_each(|v| *v /= n);
        }
        Ok(Data::Dense(m))
    }
    fn n_features_in(&self) -> Option<usize> {
        self.f
    }
    fn n_features_out(&self) -> Option<usize> {
        self.f
    }
    fn name(&self) -> &'static str {
        "Normalizer"
    }
}

/// Categories of one encoded column.
#[derive(Debug, Clone)]
enum Cats {
    Num(Vec<f64>),
    Str(Vec<String>),
}

impl Cats {
    fn from_value(v: &Value) -> BResult<Cats> {
        let a = v.as_array().ok_or("categories_ entry is not an array")?;
        if a.is_strings() {
            return Ok(Cats::Str(a.to_strings().unwrap_or_default()));
        }
        if a.dtype.kind == 'O' {
            // object arrays of strings with a trailing NaN/None (missing category)
            if let Some(objs) = a.objects() {
                let mut out = Vec::with_capacity(objs.len());
                for x in objs {
                    match x {
                        Value::Str(s) => out.push(s.to_string()),
                        Value::Bytes(b) => out.push(String::from_utf8_lossy(b).into_owned()),
                        Value::None => out.push("\u{0}None".into()),
                        other if other.as_f64().is_some_and(f64::is_nan) => {
                            out.push("\u{0}nan".into())
                        }
                        _ => {
                            return a
                                .to_f64()
                                .map(Cats::Num)
                                .map_err(|_| "categories mix strings and numbers".to_string())
                        }
                    }
                }
                return Ok(Cats::Str(out));
            }
        }
        Ok(Cats::Num(a.to_f64()?))
    }

    fn len(&self) -> usize {
        match self {
            Cats::Num(v) => v.len(),
            Cats::Str(v) => v.len(),
        }
    }

    fn is_str(&self) -> bool {
        matches!(self, Cats::Str(_))
    }

    /// Index of row `i` of column `c` among the categories.
    fn find(&self, c: &Column, i: usize) -> Result<Option<usize>, String> {
        Ok(match (self, c) {
            (Cats::Num(cats), Column::Num(v)) => {
                let x = v[i];
                cats.iter()
                    .position(|&k| k == x || (k.is_nan() && x.is_nan()))
            }
            (Cats::Str(cats), Column::Str(v)) => cats.iter().position(|k| *k == v[i]),
            (Cats::Str(cats), Column::Num(v)) if v[i].is_nan() => {
                cats.iter().position(|k| k == "\u{0}nan")
            }
            (Cats::Num(cats), Column::Str(v)) => match v[i].trim().parse::<f64>() {
                Ok(x) => cats.iter().position(|&k| k == x),
                Err(_) => return Err(format!("expected a number, got the string '{}'", v[i])),
            },
            (Cats::Str(_), Column::Num(v)) => {
                return Err(format!(
                    "expected a string (BYTES) column, got the number {}",
                    v[i]
                ))
            }
        })
    }

    /// The category name for logging.
    fn describe(c: &Column, i: usize) -> String {
        match c {
            Column::Num(v) => v[i].to_string(),
            Column::Str(v) => format!("'{}'", v[i]),
        }
    }
}

fn categories(o: &Obj) -> BResult<Vec<Cats>> {
    o.req("categories_")?
        .as_seq()
        .ok_or_else(|| format!("{}.categories_ is not a list", o.class))?
        .iter()
        .map(Cats::from_value)
        .collect()
}

/// OneHotEncoder (dense output).
#[derive(Debug, Clone)]
pub struct OneHot {
    cats: Vec<Cats>,
    drop: Vec<Option<usize>>,
    ignore_unknown: bool,
}

impl OneHot {
    /// Builds from its object.
    pub fn from_obj(o: &Obj) -> BResult<OneHot> {
        if o.bool_or("_infrequent_enabled", false) {
            return Err("OneHotEncoder with infrequent categories (min_frequency / max_categories) is not supported".into());
        }
        let cats = categories(o)?;
        let drop = match o.get("drop_idx_") {
            None | Some(Value::None) => vec![None; cats.len()],
            Some(v) => {
                let items = v.as_seq().or_else(|| {
                    v.as_array()
                        .and_then(|a| a.to_i64().ok())
                        .map(|i| i.into_iter().map(Value::Int).collect())
                });
                let items = items.ok_or("OneHotEncoder.drop_idx_ is not an array")?;
                items
                    .iter()
                    .map(|x| x.as_i64().and_then(|i| usize::try_from(i).ok()))
                    .collect()
            }
        };
        if drop.len() != cats.len()
            || drop
                .iter()
                .zip(&cats)
                .any(|(d, c)| d.is_some_and(|d| d >= c.len()))
        {
            return Err("OneHotEncoder.drop_idx_ does not match categories_".into());
        }
        let hu = o
            .str_opt("handle_unknown")
            .unwrap_or_else(|| "error".into());
        Ok(OneHot {
            cats,
            drop,
            ignore_unknown: hu != "error",
        })
    }
}

impl Transform for OneHot {
    fn transform(&self, x: Data) -> Result<Data, String> {
        if x.cols() != self.cats.len() {
            return Err(format!(
                "OneHotEncoder expects {} columns, got {}",
                self.cats.len(),
                x.cols()
            ));
        }
        let widths: Vec<usize> = self
            .cats
            .iter()
            .zip(&self.drop)
            .map(|(c, d)| c.len() - usize::from(d.is_some()))
            .collect();
        let total: usize = widths.iter().sum();
        let rows = x.rows();
        let mut m = Matrix::zeros(rows, total);
        let mut off = 0;
        for (j, cats) in self.cats.iter().enumerate() {
            let col = x.column(j);
            for i in 0..rows {
                let idx = cats
                    .find(&col, i)
                    .map_err(|e| format!("OneHotEncoder column {j}: {e}"))?;
                match idx {
                    Some(k) => {
                        let pos = match self.drop[j] {
                            Some(d) if d == k => continue,
                            Some(d) if k > d => k - 1,
                            _ => k,
                        };
                        m.data[i * total + off + pos] = 1.0;
                    }
                    None if self.ignore_unknown => {}
                    None => {
                        return Err(format!(
                        "OneHotEncoder: unknown category {} in column {j} (handle_unknown='error')",
                        Cats::describe(&col, i)
                    ))
                    }
                }
            }
            off += widths[j];
        }
        Ok(Data::Dense(m))
    }
    fn n_features_in(&self) -> Option<usize> {
        Some(self.cats.len())
    }
    fn n_features_out(&self) -> Option<usize> {
        Some(
            self.cats
                .iter()
                .zip(&self.drop)
                .map(|(c, d)| c.len() - usize::from(d.is_some()))
                .sum(),
        )
    }
    fn string_inputs(&self) -> Vec<bool> {
        self.cats.iter().map(Cats::is_str).collect()
    }
    fn name(&self) -> &'static str {
        "OneHotEncoder"
    }
}

/// OrdinalEncoder.
#[derive(Debug, Clone)]
pub struct Ordinal {
    cats: Vec<Cats>,
    unknown_value: Option<f64>,
    missing_value: f64,
}

impl Ordinal {
    /// Builds from its object.
    pub fn from_obj(o: &Obj) -> BResult<Ordinal> {
        if o.bool_or("_infrequent_enabled", false) {
            return Err("OrdinalEncoder with infrequent categories is not supported".into());
        }
        let hu = o
            .str_opt("handle_unknown")
            .unwrap_or_else(|| "error".into());
        let unknown_value = if hu == "use_encoded_value" {
            Some(
                o.get("unknown_value")
                    .and_then(|v| v.as_f64())
                    .unwrap_or(f64::NAN),
            )
        } else {
            None
        };
        let missing_value = o
            .get("encoded_missing_value")
            .and_then(|v| v.as_f64())
            .unwrap_or(f64::NAN);
        Ok(Ordinal {
            cats: categories(o)?,
            unknown_value,
            missing_value,
        })
    }
}

impl Transform for Ordinal {
    fn transform(&self, x: Data) -> Result<Data, String> {
        let f = self.cats.len();
        if x.cols() != f {
            return Err(format!(
                "OrdinalEncoder expects {f} columns, got {}",
                x.cols()
            ));
        }
        let rows = x.rows();
        let mut m = Matrix::zeros(rows, f);
        for (j, cats) in self.cats.iter().enumerate() {
            let col = x.column(j);
            for i in 0..rows {
                let is_missing = matches!(&col, Column::Num(v) if v[i].is_nan());
                let v = match cats.find(&col, i).map_err(|e| format!("OrdinalEncoder column {j}: {e}"))? {
                    Some(_) if is_missing => self.missing_value,
                    Some(k) => k as f64,
                    None => match self.unknown_value {
                        Some(u) => u,
                        None => {
                            return Err(format!(
                                "OrdinalEncoder: unknown category {} in column {j} (handle_unknown='error')",
                                Cats::describe(&col, i)
                            ))
                        }
                    },
                };
                m.data[i * f + j] = v;
            }
        }
        Ok(Data::Dense(m))
    }
    fn n_features_in(&self) -> Option<usize> {
        Some(self.cats.len())
    }
    fn n_features_out(&self) -> Option<usize> {
        Some(self.cats.len())
    }
    fn string_inputs(&self) -> Vec<bool> {
        self.cats.iter().map(Cats::is_str).collect()
    }
    fn name(&self) -> &'static str {
        "OrdinalEncoder"
    }
}

/// SimpleImputer (numeric or string statistics).
#[derive(Debug, Clone)]
pub struct Imputer {
    stats: Column,
    keep: Vec<bool>,
    missing: Missing,
}

#[derive(Debug, Clone)]
enum Missing {
    Nan,
    Num(f64),
    Str(String),
    None,
}

impl Imputer {
    /// Builds from its object.
    pub fn from_obj(o: &Obj) -> BResult<Imputer> {
        if o.get("indicator_").is_some_and(|v| !v.is_none()) {
            return Err("SimpleImputer(add_indicator=True) is not supported".into());
        }
        let sv = o.req("statistics_")?;
        let sa = sv
            .as_array()
            .ok_or("SimpleImputer.statistics_ is not an array")?;
        let stats = if sa.dtype.kind == 'O' || sa.is_strings() {
            let objs = sa.objects().map(|o| o.to_vec()).unwrap_or_default();
            if objs.iter().all(|v| v.as_f64().is_some()) && !objs.is_empty() {
                Column::Num(objs.iter().filter_map(Value::as_f64).collect())
            } else {
                Column::Str(
                    sa.to_strings()
                        .ok_or("SimpleImputer.statistics_ mixes strings and numbers")?,
                )
            }
        } else {
            Column::Num(sa.to_f64()?)
        };
        let keep = match &stats {
            Column::Num(v) if !o.bool_or("keep_empty_features", false) => {
                v.iter().map(|s| !s.is_nan()).collect()
            }
            c => vec![true; c.len()],
        };
        let missing = match o.get("missing_values") {
            None => Missing::Nan,
            Some(Value::None) => Missing::None,
            Some(Value::Str(s)) => Missing::Str(s.to_string()),
            Some(v) => match v.as_f64() {
                Some(f) if f.is_nan() => Missing::Nan,
                Some(f) => Missing::Num(f),
                None => return Err("SimpleImputer.missing_values has an unsupported type".into()),
            },
        };
        Ok(Imputer {
            stats,
            keep,
            missing,
        })
    }
}

impl Transform for Imputer {
    fn transform(&self, x: Data) -> Result<Data, String> {
        let f = self.stats.len();
        if x.cols() != f {
            return Err(format!(
                "SimpleImputer expects {f} columns, got {}",
                x.cols()
            ));
        }
        let rows = x.rows();
        match &self.stats {
            Column::Num(stats) => {
                let m = x.into_dense("SimpleImputer")?;
                let out_cols = self.keep.iter().filter(|k| **k).count();
                let mut out = Matrix::zeros(rows, out_cols);
                for i in 0..rows {
                    let mut c = 0;
                    for j in 0..f {
                        if !self.keep[j] {
                            continue;
                        }
                        let v = m.data[i * f + j];
                        let miss = match &self.missing {
                            Missing::Nan | Missing::None => v.is_nan(),
                            Missing::Num(n) => v == *n,
                            Missing::Str(_) => false,
                        };
                        out.data[i * out_cols + c] = if miss { stats[j] } else { v };
                        c += 1;
                    }
                }
                Ok(Data::Dense(out))
            }
            Column::Str(stats) => {
                let mut columns = Vec::with_capacity(f);
                for (j, stat) in stats.iter().enumerate() {
                    columns.push(match x.column(j) {
                        Column::Str(v) => Column::Str(
                            v.into_iter()
                                .map(|s| match &self.missing {
                                    Missing::Str(m) if *m == s => stat.clone(),
                                    Missing::None | Missing::Nan if s.is_empty() => stat.clone(),
                                    _ => s,
                                })
                                .collect(),
                        ),
                        Column::Num(v) => Column::Str(
                            v.into_iter()
                                .map(|n| {
                                    if n.is_nan() {
                                        stat.clone()
                                    } else {
                                        n.to_string()
                                    }
                                })
                                .collect(),
                        ),
                    });
                }
                Ok(Data::Table { rows, columns })
            }
        }
    }
    fn n_features_in(&self) -> Option<usize> {
        Some(self.stats.len())
    }
    fn n_features_out(&self) -> Option<usize> {
        Some(self.keep.iter().filter(|k| **k).count())
    }
    fn string_inputs(&self) -> Vec<bool> {
        vec![matches!(self.stats, Column::Str(_)); self.stats.len()]
    }
    fn name(&self) -> &'static str {
        "SimpleImputer"
    }
}

/// PolynomialFeatures (dense).
#[derive(Debug, Clone)]
pub struct Polynomial {
    f: usize,
    combos: Vec<Vec<usize>>,
}

impl Polynomial {
    /// Builds from its object.
    pub fn from_obj(o: &Obj) -> BResult<Polynomial> {
        let f = o
            .n_features_in()
            .filter(|&f| f > 0)
            .ok_or("PolynomialFeatures lacks n_features_in_")?;
        let (min_d, max_d) = match (o.get("_min_degree"), o.get("_max_degree")) {
            (Some(a), Some(b)) => (a.as_i64().unwrap_or(0), b.as_i64().unwrap_or(0)),
            _ => (0, o.int("degree")?),
        };
        let max_d = usize::try_from(max_d)
            .ok()
            .filter(|&d| d <= 64)
            .ok_or("PolynomialFeatures degree above 64 is not supported")?;
        let min_d = usize::try_from(min_d).map_err(|_| "bad degree")?;
        let interaction = o.bool_or("interaction_only", false);
        let bias = o.bool_or("include_bias", true);
        let mut combos: Vec<Vec<usize>> = Vec::new();
        if bias {
            combos.push(Vec::new());
        }
        // combinations(_with_replacement)(range(f), d) in lexicographic order
        for d in min_d.max(1)..=max_d {
            let mut c: Vec<usize> = if interaction {
                (0..d).collect()
            } else {
                vec![0; d]
            };
            if interaction && d > f {
                break;
            }
            loop {
                combos.push(c.clone());
                if combos.len() > 100_000 {
                    return Err("PolynomialFeatures produces too many features".into());
                }
                // advance
                let mut i = d;
                let mut advanced = false;
                while i > 0 {
                    i -= 1;
                    let limit = if interaction { f - (d - i) } else { f - 1 };
                    if c[i] < limit {
                        c[i] += 1;
                        for k in i + 1..d {
                            c[k] = if interaction { c[k - 1] + 1 } else { c[i] };
                        }
                        advanced = true;
                        break;
                    }
                }
                if !advanced {
                    break;
                }
            }
        }
        Ok(Polynomial { f, combos })
    }
}

impl Transform for Polynomial {
    fn transform(&self, x: Data) -> Result<Data, String> {
        let m = x.into_dense("PolynomialFeatures")?;
        m.check_cols(self.f, "PolynomialFeatures")?;
        let k = self.combos.len();
        let mut out = Matrix::zeros(m.rows, k);
        for i in 0..m.rows {
            let row = m.row(i);
            for (j, c) in self.combos.iter().enumerate() {
                let mut v = 1.0;
                for (n, &f) in c.iter().enumerate() {
                    v = if n == 0 { row[f] } else { v * row[f] };
                }
                out.data[i * k + j] = v;
            }
        }
        Ok(Data::Dense(out))
    }
    fn n_features_in(&self) -> Option<usize> {
        Some(self.f)
    }
    fn n_features_out(&self) -> Option<usize> {
        Some(self.combos.len())
    }
    fn name(&self) -> &'static str {
        "PolynomialFeatures"
    }
}

/// FunctionTransformer with `func=None` (the identity).
#[derive(Debug, Clone)]
pub struct Identity {
    f: Option<usize>,
}

impl Identity {
    /// Builds from its object, refusing any real function.
    pub fn from_obj(o: &Obj) -> BResult<Identity> {
        match o.get("func") {
            None | Some(Value::None) => Ok(Identity {
                f: o.n_features_in(),
            }),
            // functools.partial(check_array, ...): input validation only
            Some(Value::Object(p)) if is_check_array(&p.borrow()) => Ok(Identity {
                f: o.n_features_in(),
            }),
            Some(v) => Err(format!(
                "FunctionTransformer(func={}) is not supported: only the identity (func=None) is",
                v.kind()
            )),
        }
    }
}

fn is_check_array(p: &crate::value::Object) -> bool {
    let first = p
        .args
        .first()
        .cloned()
        .or_else(|| p.state.as_seq().and_then(|s| s.first().cloned()));
    &*p.class == "functools.partial"
        && matches!(first, Some(Value::Global(g)) if g.ends_with(".check_array"))
}

impl Transform for Identity {
    fn transform(&self, x: Data) -> Result<Data, String> {
        Ok(x)
    }
    fn n_features_in(&self) -> Option<usize> {
        self.f
    }
    fn n_features_out(&self) -> Option<usize> {
        self.f
    }
    fn name(&self) -> &'static str {
        "FunctionTransformer"
    }
}
