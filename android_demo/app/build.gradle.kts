// :app — the Android demo: translate and benchmark a `tfmobile export` on the phone's CPU and GPU with
// LiteRT 2.x (CompiledModel API), plus the headless entry point that `tfmobile bench --adb` drives.
// Plain platform Views (no Compose, no AndroidX UI): the app is a thin shell around :core.
import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    alias(libs.plugins.android.application)
    alias(libs.plugins.kotlin.android)
}

android {
    namespace = "dev.tfmobile.demo"
    compileSdk = 36

    defaultConfig {
        applicationId = "dev.tfmobile.demo"
        // LiteRT 2.3.0's AARs declare minSdk 24: the Nexus 5 (Android 6.0.1, API 23) cannot install
        // this app (tfmobile/resources/delegates/devices.json says so too).
        minSdk = 24
        targetSdk = 36
        versionCode = 1
        versionName = "0.1"
    }

    buildTypes {
        release {
            isMinifyEnabled = false
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    // model.tflite is memory-mapped by LiteRT from the app's external files dir, never from assets,
    // so nothing needs `noCompress`.
}

kotlin {
    compilerOptions { jvmTarget.set(JvmTarget.JVM_17) } // as :core, without a toolchain (see there)
}

dependencies {
    implementation(project(":core"))
    implementation(libs.litert)
    implementation(libs.litert.gpu) // the GPU accelerator is a separate artifact from LiteRT 2.3.0 on
}

// The delegate configs (TFLiteSettings JSON, one file per device and delegate) live once, in the Python
// package (tfmobile/resources/delegates/); the app bundles copies as assets/delegates/*.json at build
// time, so that the benchmark screen offers exactly the files `tfmobile bench --delegate` uses.
abstract class DelegateConfigAssets : DefaultTask() {
    @get:InputFiles
    @get:PathSensitive(PathSensitivity.NAME_ONLY)
    abstract val configs: ConfigurableFileCollection

    @get:OutputDirectory
    abstract val assetsDir: DirectoryProperty

    @TaskAction
    fun copy() {
        val out = assetsDir.get().asFile.resolve("delegates")
        out.deleteRecursively()
        out.mkdirs()
        for (file in configs.files.sortedBy { it.name }) file.copyTo(out.resolve(file.name))
    }
}

val delegateConfigAssets = tasks.register<DelegateConfigAssets>("delegateConfigAssets") {
    configs.from(fileTree(rootProject.file("../tfmobile/resources/delegates")) {
        include("*.json")
        exclude("*.schema.json", "devices.json") // the schemas and the device table are not configs
    })
}

androidComponents {
    onVariants { variant ->
        variant.sources.assets?.addGeneratedSourceDirectory(delegateConfigAssets, DelegateConfigAssets::assetsDir)
    }
}
