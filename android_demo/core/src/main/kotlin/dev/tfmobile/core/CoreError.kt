package dev.tfmobile.core

/**
 * Bad input to the core (malformed JSON, metadata of another format, a delegate config the schema
 * refuses, a model that breaks the signature contract, a sentence too long): one line that says what
 * is wrong and, where there is one, what to do. The app shows the message as it is.
 */
open class CoreError(message: String) : RuntimeException(message)
