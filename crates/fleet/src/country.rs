//! ISO 3166-1 alpha-2 country codes, and help for people who write a country's name.
//!
//! Sovereignty rules (GDPR, HDS, SecNumCloud) are decided on the site's country, so the
//! code must be a real one: a typo like `FE` would silently make a French site "not EU".

/// Every officially assigned ISO 3166-1 alpha-2 code (249).
/// Source: ISO 3166 Maintenance Agency, Online Browsing Platform (iso.org/obp), 2024.
pub const ISO_3166_ALPHA2: [&str; 249] = [
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ", "BA",
    "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS", "BT", "BV",
    "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN", "CO", "CR", "CU",
    "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE", "EG", "EH", "ER", "ES",
    "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF", "GG", "GH", "GI", "GL", "GM",
    "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM", "HN", "HR", "HT", "HU", "ID", "IE",
    "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM", "JO", "JP", "KE", "KG", "KH", "KI", "KM",
    "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC", "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY",
    "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK", "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT",
    "MU", "MV", "MW", "MX", "MY", "MZ", "NA", "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU",
    "NZ", "OM", "PA", "PE", "PF", "PG", "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA",
    "RE", "RO", "RS", "RU", "RW", "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM",
    "SN", "SO", "SR", "SS", "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL",
    "TM", "TN", "TO", "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE",
    "VG", "VI", "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
];

/// Names and near-codes people write instead of the code, with the code they mean.
/// Not exhaustive: it only makes the fix text specific for the usual cases.
const HINTS: &[(&str, &str)] = &[
    ("france", "FR"),
    ("germany", "DE"),
    ("deutschland", "DE"),
    ("allemagne", "DE"),
    ("uk", "GB"),
    ("unitedkingdom", "GB"),
    ("greatbritain", "GB"),
    ("england", "GB"),
    ("el", "GR"),
    ("greece", "GR"),
    ("usa", "US"),
    ("unitedstates", "US"),
    ("unitedstatesofamerica", "US"),
    ("singapore", "SG"),
    ("japan", "JP"),
    ("china", "CN"),
    ("netherlands", "NL"),
    ("holland", "NL"),
    ("ireland", "IE"),
    ("belgium", "BE"),
    ("spain", "ES"),
    ("espagne", "ES"),
    ("italy", "IT"),
    ("italie", "IT"),
    ("sweden", "SE"),
    ("norway", "NO"),
    ("finland", "FI"),
    ("denmark", "DK"),
    ("iceland", "IS"),
    ("switzerland", "CH"),
    ("suisse", "CH"),
    ("austria", "AT"),
    ("poland", "PL"),
    ("portugal", "PT"),
    ("luxembourg", "LU"),
    ("canada", "CA"),
    ("india", "IN"),
    ("korea", "KR"),
    ("southkorea", "KR"),
    ("australia", "AU"),
    ("brazil", "BR"),
];

/// Whether `code` is an assigned ISO 3166-1 alpha-2 code (upper case).
#[must_use]
pub fn is_iso_3166_alpha2(code: &str) -> bool {
    ISO_3166_ALPHA2.binary_search(&code).is_ok()
}

/// The code the user most likely meant by `written`, if it is recognisable.
pub(crate) fn suggest_code(written: &str) -> Option<&'static str> {
    let upper = written.trim().to_ascii_uppercase();
    if let Ok(i) = ISO_3166_ALPHA2.binary_search(&upper.as_str()) {
        return ISO_3166_ALPHA2.get(i).copied();
    }
    let key = crate::diag::normalize(written);
    HINTS.iter().find(|(name, _)| *name == key).map(|(_, code)| *code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        assert!(ISO_3166_ALPHA2.windows(2).all(|w| w[0] < w[1]));
        for eu in crate::model::EU_EEA {
            assert!(is_iso_3166_alpha2(eu), "{eu}");
        }
        for (_, code) in HINTS {
            assert!(is_iso_3166_alpha2(code), "{code}");
        }
    }

    #[test]
    fn hints() {
        assert_eq!(suggest_code("France"), Some("FR"));
        assert_eq!(suggest_code("fr"), Some("FR"));
        assert_eq!(suggest_code("United Kingdom"), Some("GB"));
        assert_eq!(suggest_code("UK"), Some("GB"));
        assert_eq!(suggest_code("Atlantis"), None);
    }
}
