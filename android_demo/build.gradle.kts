// Plugins are declared here once, with the versions of gradle/libs.versions.toml, and applied by the
// modules that need them.
plugins {
    alias(libs.plugins.android.application) apply false
    alias(libs.plugins.kotlin.android) apply false
    alias(libs.plugins.kotlin.jvm) apply false
}
