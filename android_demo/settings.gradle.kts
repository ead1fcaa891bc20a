// The Android demo of tfmobile: `:core` is plain Kotlin/JVM (tokenizer, decoding, statistics, result
// JSON; tested on the JVM by tests/test_android_core.py with the same source layout), `:app` is the
// Android application on LiteRT 2.x. See README.md for the versions and why they are pinned.
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}

rootProject.name = "tfmobile-android"
include(":core", ":app")
