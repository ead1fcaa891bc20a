// :core — the app's logic in plain Kotlin/JVM: no android.* imports and no dependencies, so that all of
// it is tested here on the JVM (tests/test_android_core.py compiles these same folders with kotlinc).
//   src/main/kotlin   the library the app uses
//   src/test/kotlin   JUnit 4 tests (kotlin.test assertions)
//   src/tools/kotlin  the JVM command lines the Python parity tests drive (tokenize, decode, stats...)
import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    alias(libs.plugins.kotlin.jvm)
}

// Java 17 bytecode from whichever JDK 17+ runs Gradle (Android Studio's bundled one): a toolchain would
// make Gradle look for, or download, a JDK 17 exactly. The JVM tests run on OpenJDK 17.
java {
    sourceCompatibility = JavaVersion.VERSION_17
    targetCompatibility = JavaVersion.VERSION_17
}
kotlin {
    compilerOptions { jvmTarget.set(JvmTarget.JVM_17) }
}

val tools: SourceSet by sourceSets.creating

// The tools see :core's internal declarations and classpath, as the tests do.
kotlin.target.compilations.named(tools.name) {
    associateWith(kotlin.target.compilations.getByName(SourceSet.MAIN_SOURCE_SET_NAME))
}

dependencies {
    testImplementation(libs.junit)
    testImplementation(libs.kotlin.test.junit)
}

// `./gradlew :core:toolsJar`: :core and its tools in one jar (run with the Kotlin stdlib on the classpath).
tasks.register<Jar>("toolsJar") {
    archiveClassifier.set("tools")
    from(sourceSets.main.get().output, tools.output)
}
