//! The regions this version knows, to warn about a misspelt one (`eu-wst-1`)
//! before the first call to it fails. aws-config and aws-sdk-sts do not
//! expose their partition data, so it is copied here, in this one place,
//! from aws-sdk-sts 1.124's endpoint rules (`partitions`, each partition's
//! `regions` and `regionRegex`): update it with the SDK. A region missing
//! from it is only warned about, never refused: new regions appear.

/// Every region of every partition, as the SDK's partition data lists them.
pub const KNOWN_REGIONS: &[&str] = &[
    // aws
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "aws-global",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    // aws-cn
    "aws-cn-global",
    "cn-north-1",
    "cn-northwest-1",
    // aws-eusc
    "eusc-de-east-1",
    // aws-iso, aws-iso-b, aws-iso-e, aws-iso-f
    "aws-iso-global",
    "us-iso-east-1",
    "us-iso-west-1",
    "aws-iso-b-global",
    "us-isob-east-1",
    "us-isob-west-1",
    "aws-iso-e-global",
    "eu-isoe-west-1",
    "aws-iso-f-global",
    "us-isof-east-1",
    "us-isof-south-1",
    // aws-us-gov
    "aws-us-gov-global",
    "us-gov-east-1",
    "us-gov-west-1",
];

/// What comes before `-<word>-<number>` in each partition's `regionRegex`.
const PREFIXES: &[&str] = &[
    "us", "eu", "ap", "sa", "ca", "me", "af", "il", "mx", // aws
    "cn", "eusc-de", "us-iso", "us-isob", "eu-isoe", "us-isof", "us-gov",
];

/// Whether `region` matches one of the partitions' patterns,
/// `<prefix>-<word>-<number>`, as a region added after this version would.
fn shaped_like_a_region(region: &str) -> bool {
    let Some((rest, number)) = region.rsplit_once('-') else {
        return false;
    };
    let Some((prefix, word)) = rest.rsplit_once('-') else {
        return false;
    };
    !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit())
        && !word.is_empty()
        && word.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && PREFIXES.contains(&prefix)
}

/// A warning for a region this version does not know, naming it and
/// saying why it may still be right; `None` for a known one.
pub fn unknown_region_warning(region: &str) -> Option<String> {
    if KNOWN_REGIONS.contains(&region) {
        None
    } else if shaped_like_a_region(region) {
        Some(format!(
            "region {region} is not one this version knows; check its spelling \
             (a region newer than this version is fine)"
        ))
    } else {
        Some(format!(
            "region {region} is not shaped like an AWS region (e.g. eu-west-1); check its spelling"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_region_passes_and_a_misspelt_one_is_named() {
        for known in ["eu-west-1", "us-gov-west-1", "cn-north-1", "eusc-de-east-1"] {
            assert_eq!(unknown_region_warning(known), None, "{known}");
        }
        let w = unknown_region_warning("eu-wst-1").unwrap();
        assert!(
            w.starts_with("region eu-wst-1 is not one this version knows"),
            "{w}"
        );
        let w = unknown_region_warning("europe").unwrap();
        assert!(w.contains("not shaped like an AWS region"), "{w}");
    }

    #[test]
    fn every_known_region_has_a_partitions_shape_but_the_global_ones() {
        for r in KNOWN_REGIONS.iter().filter(|r| !r.ends_with("-global")) {
            assert!(shaped_like_a_region(r), "{r}");
        }
        assert!(shaped_like_a_region("ap-southeast-9"));
        assert!(!shaped_like_a_region("xx-west-1"));
        assert!(!shaped_like_a_region("eu-west"));
    }
}
