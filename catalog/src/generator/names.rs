//! Word lists for made-up but readable names, and stable base62 identifiers.

pub(crate) const GENRES: &[&str] = &[
    "pop",
    "indie rock",
    "hip hop",
    "electronic",
    "r&b",
    "rock",
    "jazz",
    "classical",
    "folk",
    "metal",
    "country",
    "latin",
    "reggae",
    "soul",
    "ambient",
    "punk",
    "blues",
    "k-pop",
    "techno",
    "singer-songwriter",
];

const ADJECTIVES: &[&str] = &[
    "Golden", "Silent", "Electric", "Velvet", "Broken", "Neon", "Paper", "Crimson", "Hollow",
    "Wild", "Blue", "Midnight", "Gentle", "Burning", "Frozen", "Lucky", "Lonely", "Secret",
    "Distant", "Bright", "Shadow", "Silver", "Restless", "Sweet", "Northern", "Faded", "Quiet",
    "Rising", "Honey", "Glass",
];

const NOUNS: &[&str] = &[
    "River",
    "Hearts",
    "Machine",
    "Garden",
    "Summer",
    "Echo",
    "Harbor",
    "Lights",
    "Ocean",
    "Dreams",
    "Avenue",
    "Wolves",
    "Mirror",
    "Satellite",
    "Fever",
    "Horizon",
    "Rain",
    "Tides",
    "Signal",
    "Canyon",
    "Season",
    "Parade",
    "Letters",
    "Orchard",
    "Static",
    "Thunder",
    "Lanterns",
    "Highway",
    "Feathers",
    "Engines",
];

const FIRST: &[&str] = &[
    "Mara", "Jonah", "Lena", "Theo", "Ivy", "Felix", "Nora", "Oscar", "Ada", "Milo", "Zara", "Eli",
    "Luna", "Hugo", "Iris", "Kai", "Rosa", "Leon", "Saga", "Arlo",
];

const LAST: &[&str] = &[
    "Vance",
    "Okafor",
    "Lindqvist",
    "Moreau",
    "Tanaka",
    "Reyes",
    "Novak",
    "Haddad",
    "Byrne",
    "Castell",
    "Ivanova",
    "Kim",
    "Duarte",
    "Weller",
    "Sato",
    "Quinn",
    "Adeyemi",
    "Falk",
    "Marsh",
    "Ortega",
];

fn pick<'a>(list: &[&'a str], x: u64) -> &'a str {
    list[(x % list.len() as u64) as usize]
}

pub(crate) fn artist_name(x: u64) -> String {
    match x % 3 {
        0 => format!("{} {}", pick(FIRST, x >> 2), pick(LAST, x >> 12)),
        1 => format!("The {} {}", pick(ADJECTIVES, x >> 2), pick(NOUNS, x >> 12)),
        _ => format!("{} {}", pick(NOUNS, x >> 2), pick(NOUNS, x >> 12)),
    }
}

pub(crate) fn title(x: u64) -> String {
    match x % 4 {
        0 => format!("{} of {}", pick(NOUNS, x >> 2), pick(NOUNS, x >> 12)),
        1 => pick(NOUNS, x >> 2).to_string(),
        _ => format!("{} {}", pick(ADJECTIVES, x >> 2), pick(NOUNS, x >> 12)),
    }
}

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `spotify:<kind>:<22 base62 characters>`, a stable function of kind and index.
pub(crate) fn uri(kind: &str, index: u64) -> String {
    let kind_label = kind.bytes().fold(0xCBF2_9CE4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)
    });
    let mut r = super::rng::Rng::derive(kind_label, index);
    let mut id = String::with_capacity(22);
    for _ in 0..22 {
        id.push(BASE62[(r.next_u64() % 62) as usize] as char);
    }
    format!("spotify:{kind}:{id}")
}

/// `u0001`, `u0002`, ...: the user id of the listener at `index` (0-based).
pub fn user_id(index: u32, users: u32) -> String {
    let width = users.to_string().len().max(4);
    format!("u{:0width$}", index + 1)
}
