"""The modules a tool may import, and the attributes of each that it may see.

A tool never receives a module: the sandbox child hands it a view holding only the attributes
listed here (and present in this interpreter). A whole module leaks whatever it imported itself
(``random._os``, ``json.tool.Path`` -> pathlib) and whatever runs code or reads attributes by name
(``functools.update_wrapper(..., updated=('__globals__',))``, ``timeit.timeit(stmt)``,
``operator.attrgetter``, ``string.Formatter``). A module without an entry here cannot be imported
by a tool at all, approved or not: approval raises limits, it does not open the interpreter.
"""

from __future__ import annotations

from collections.abc import Iterable


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


MODULE_ATTRIBUTES: dict[str, frozenset[str]] = {
    "math": _names(
        """acos acosh asin asinh atan atan2 atanh cbrt ceil comb copysign cos cosh degrees dist e erf
        erfc exp exp2 expm1 fabs factorial floor fma fmod frexp fsum gamma gcd hypot inf isclose
        isfinite isinf isnan isqrt lcm ldexp lgamma log log10 log1p log2 modf nan nextafter perm pi
        pow prod radians remainder sin sinh sqrt sumprod tan tanh tau trunc ulp"""
    ),
    "cmath": _names(
        """acos acosh asin asinh atan atanh cos cosh e exp inf infj isclose isfinite isinf isnan log
        log10 nan nanj phase pi polar rect sin sinh sqrt tan tanh tau"""
    ),
    "json": _names("dumps loads JSONDecodeError"),
    "re": _names(
        """compile search match fullmatch split findall finditer sub subn escape error IGNORECASE I
        MULTILINE M DOTALL S VERBOSE X ASCII A UNICODE U"""
    ),
    "string": _names(
        """ascii_letters ascii_lowercase ascii_uppercase digits hexdigits octdigits punctuation
        printable whitespace capwords Template"""
    ),
    "statistics": _names(
        """mean fmean geometric_mean harmonic_mean median median_low median_high median_grouped mode
        multimode pstdev pvariance stdev variance quantiles correlation covariance linear_regression
        NormalDist StatisticsError"""
    ),
    "itertools": _names(
        """accumulate batched chain combinations combinations_with_replacement compress count cycle
        dropwhile filterfalse groupby islice pairwise permutations product repeat starmap takewhile
        tee zip_longest"""
    ),
    "functools": _names("reduce partial cmp_to_key lru_cache cache"),
    "collections": _names("Counter deque defaultdict OrderedDict namedtuple ChainMap"),
    "datetime": _names("date time datetime timedelta timezone MINYEAR MAXYEAR UTC"),
    "decimal": _names(
        """Decimal Context localcontext getcontext InvalidOperation DivisionByZero ROUND_HALF_UP
        ROUND_HALF_EVEN ROUND_HALF_DOWN ROUND_UP ROUND_DOWN ROUND_CEILING ROUND_FLOOR ROUND_05UP"""
    ),
    "fractions": _names("Fraction"),
    "random": _names(
        """random uniform randint randrange choice choices sample shuffle gauss normalvariate
        triangular betavariate expovariate gammavariate lognormvariate vonmisesvariate
        paretovariate weibullvariate binomialvariate getrandbits randbytes seed Random"""
    ),
    "heapq": _names("heappush heappop heapify heapreplace heappushpop nlargest nsmallest merge"),
    "bisect": _names("bisect bisect_left bisect_right insort insort_left insort_right"),
    "operator": _names(
        """add sub mul truediv floordiv mod pow neg pos abs eq ne lt le gt ge and_ or_ xor not_ truth
        is_ is_not contains countOf indexOf getitem itemgetter concat index inv invert lshift rshift
        matmul"""
    ),
    "textwrap": _names("wrap fill dedent indent shorten TextWrapper"),
    "unicodedata": _names(
        """name lookup category bidirectional combining east_asian_width mirrored decomposition
        normalize is_normalized numeric decimal digit unidata_version"""
    ),
    "hashlib": _names(
        """md5 sha1 sha224 sha256 sha384 sha512 blake2b blake2s sha3_224 sha3_256 sha3_384 sha3_512
        shake_128 shake_256"""
    ),
    "base64": _names(
        """b64encode b64decode standard_b64encode standard_b64decode urlsafe_b64encode
        urlsafe_b64decode b32encode b32decode b16encode b16decode b85encode b85decode a85encode
        a85decode"""
    ),
    # Needs approval (not in the default profile): reads the clock, sleeps within the wall limit.
    "time": _names("time time_ns monotonic monotonic_ns perf_counter perf_counter_ns sleep gmtime strftime strptime struct_time"),
}


# Modules that C code of a declared module imports at call time: C-level imports go through the
# *calling frame's* ``__import__`` (the tool's), so they need a view too; it holds only what that C
# code calls. Tools themselves cannot name them (the gate refuses private modules and attributes).
INTERNAL_DEPENDENCIES: dict[str, dict[str, frozenset[str]]] = {
    "datetime": {"_strptime": _names("_strptime_datetime _strptime_time")},
    "time": {"_strptime": _names("_strptime_datetime _strptime_time")},
}


def view_problem(name: str) -> str | None:
    """Why a tool may not import ``name`` (no curated view exists), or None."""
    if name in MODULE_ATTRIBUTES:
        return None
    return (
        f"{name!r} has no curated view for tools (importable: {', '.join(sorted(MODULE_ATTRIBUTES))})"
    )


def attribute_table(modules: Iterable[str]) -> dict[str, list[str]]:
    """The allow-lists of ``modules`` (and of their internal dependencies) in the form the sandbox
    child receives them."""
    table = {name: sorted(MODULE_ATTRIBUTES[name]) for name in modules if name in MODULE_ATTRIBUTES}
    for name in list(table):
        for internal, attributes in INTERNAL_DEPENDENCIES.get(name, {}).items():
            table[internal] = sorted(attributes)
    return table
