//! The allow-list of classes and functions a pickle may name. A pickle names
//! callables with GLOBAL / STACK_GLOBAL; anything not listed here is refused
//! with an error naming it, before anything else happens. Even listed names
//! are never called: the reader rebuilds plain data from them.

/// numpy and standard-library names, fully qualified.
const EXACT: &[&str] = &[
    "numpy.ndarray",
    "numpy.dtype",
    "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
    "numpy.core.numeric._frombuffer",
    "numpy._core.numeric._frombuffer",
    "numpy.random._pickle.__randomstate_ctor",
    "numpy.random._pickle.__generator_ctor",
    "numpy.random._pickle.__bit_generator_ctor",
    "numpy.random.mtrand.RandomState",
    "numpy.random.mtrand._rand",
    "numpy.random._mt19937.MT19937",
    "numpy.random._pcg64.PCG64",
    "numpy.random.bit_generator.SeedSequence",
    "numpy.random.bit_generator.__pyx_unpickle_SeedSequence",
    "joblib.numpy_pickle.NumpyArrayWrapper",
    "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper",
    "_codecs.encode",
    "builtins.slice",
    "builtins.set",
    "builtins.frozenset",
    "builtins.bytearray",
    "builtins.object",
    "builtins.float",
    "builtins.int",
    "builtins.str",
    "builtins.bool",
    "builtins.list",
    "builtins.dict",
    "builtins.tuple",
    "__builtin__.set",
    "__builtin__.frozenset",
    "__builtin__.object",
    "copyreg._reconstructor",
    "copy_reg._reconstructor",
    "collections.OrderedDict",
    // HistGradientBoosting's preprocessor: FunctionTransformer(partial(check_array))
    "functools.partial",
];

/// numpy scalar type names allowed as class references (`dtype=np.float64`).
const NUMPY_TYPES: &[&str] = &[
    "float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint64", "uint32",
    "uint16", "uint8", "bool_", "object_", "str_", "bytes_", "intp",
];

/// scikit-learn class names allowed in any `sklearn.*` module (module paths
/// move between releases; the class names do not).
pub const SKLEARN_CLASSES: &[&str] = &[
    // estimators and transformers this runtime evaluates
    "LogisticRegression",
    "LinearRegression",
    "Ridge",
    "RidgeClassifier",
    "Lasso",
    "ElasticNet",
    "SGDRegressor",
    "SGDClassifier",
    "LinearSVC",
    "LinearSVR",
    "DecisionTreeClassifier",
    "DecisionTreeRegressor",
    "ExtraTreeClassifier",
    "ExtraTreeRegressor",
    "RandomForestClassifier",
    "RandomForestRegressor",
    "ExtraTreesClassifier",
    "ExtraTreesRegressor",
    "GradientBoostingClassifier",
    "GradientBoostingRegressor",
    "HistGradientBoostingClassifier",
    "HistGradientBoostingRegressor",
    "KNeighborsClassifier",
    "KNeighborsRegressor",
    "GaussianNB",
    "SVC",
    "SVR",
    "IsolationForest",
    "KMeans",
    "PCA",
    "TruncatedSVD",
    "StandardScaler",
    "MinMaxScaler",
    "MaxAbsScaler",
    "RobustScaler",
    "Normalizer",
    "OneHotEncoder",
    "OrdinalEncoder",
    "SimpleImputer",
    "PolynomialFeatures",
    "FunctionTransformer",
    "ColumnTransformer",
    "Pipeline",
    "OneVsRestClassifier",
    "MLPClassifier",
    "MLPRegressor",
    "DummyClassifier",
    "DummyRegressor",
    // helpers stored inside them
    "Tree",
    "TreePredictor",
    "_BinMapper",
    "LabelBinarizer",
    // MLP's fitted solver state (kept by scikit-learn, unused here)
    "AdamOptimizer",
    "SGDOptimizer",
    "LabelEncoder",
    "KDTree",
    "BallTree",
    "newObj",
    "EuclideanDistance",
    "EuclideanDistance64",
    "ManhattanDistance",
    "ManhattanDistance64",
    "MinkowskiDistance",
    "MinkowskiDistance64",
    "ChebyshevDistance",
    "ChebyshevDistance64",
    "Hinge",
    "Log",
    "LogLoss",
    "SquaredLoss",
    "SquaredError",
    "ModifiedHuber",
    "SquaredHinge",
    "Huber",
    "EpsilonInsensitive",
    "SquaredEpsilonInsensitive",
    "CyHalfBinomialLoss",
    "CyHalfMultinomialLoss",
    "CyHalfSquaredError",
    "CyHuberLoss",
    "CyAbsoluteError",
    "CyPinballLoss",
    "CyHalfPoissonLoss",
    "CyExponentialLoss",
    "HalfBinomialLoss",
    "HalfMultinomialLoss",
    "HalfSquaredError",
    "HuberLoss",
    "AbsoluteError",
    "PinballLoss",
    "HalfPoissonLoss",
    "ExponentialLoss",
    "IdentityLink",
    "LogitLink",
    "LogLink",
    "MultinomialLogit",
    "Interval",
    "BinomialDeviance",
    "MultinomialDeviance",
    "LeastSquaresError",
    "LeastAbsoluteError",
    "HuberLossFunction",
    "QuantileLossFunction",
    "ExponentialLoss",
    "Bunch",
    "check_array",
];

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|p| {
            !p.is_empty()
                && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !p.starts_with(|c: char| c.is_ascii_digit())
        })
}

/// Checks `module.name` against the allow-list; returns the qualified name
/// or an error that names what was refused.
pub fn check(module: &str, name: &str) -> Result<String, String> {
    let full = format!("{module}.{name}");
    if !is_identifier(module) || !is_identifier(name) || name.contains('.') {
        return Err(format!(
            "refusing pickle global '{}': not a plain module.name",
            full.escape_debug()
        ));
    }
    if EXACT.contains(&full.as_str()) {
        return Ok(full);
    }
    if module == "numpy" && NUMPY_TYPES.contains(&name) {
        return Ok(full);
    }
    if module == "sklearn" || module.starts_with("sklearn.") {
        let class = name.strip_prefix("__pyx_unpickle_").unwrap_or(name);
        if SKLEARN_CLASSES.contains(&class) {
            return Ok(full);
        }
        return Err(format!(
            "unsupported scikit-learn class '{full}': this runtime rebuilds only the estimators and \
             transformers it can evaluate (see the README's scikit-learn section)"
        ));
    }
    Err(format!(
        "refusing pickle global '{full}': only allow-listed scikit-learn and numpy classes may \
         appear in a model file, and nothing in it is ever executed"
    ))
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn refuses_code() {
        assert!(check("os", "system").unwrap_err().contains("os.system"));
        assert!(check("builtins", "eval").is_err());
        assert!(check("subprocess", "Popen").is_err());
        assert!(check("posix", "system").is_err());
        assert!(check("sklearn.utils", "_joblib_eval").is_err());
        assert!(check("numpy", "load").is_err());
        assert!(check("builtins", "getattr").is_err());
    }

    #[test]
    fn allows_models() {
        assert!(check("sklearn.linear_model._logistic", "LogisticRegression").is_ok());
        assert!(check("numpy._core.multiarray", "_reconstruct").is_ok());
        assert!(check("sklearn._loss._loss", "__pyx_unpickle_CyHalfBinomialLoss").is_ok());
    }
}
