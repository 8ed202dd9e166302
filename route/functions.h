/* functions.h - the session-level entry points (one definition each in session.c, ops.c,
 * writes.c) and the designated initialisers that put them in the function list. */
#ifndef HSM_ROUTE_FUNCTIONS_H
#define HSM_ROUTE_FUNCTIONS_H
#include "route.h"

__typeof__(C_OpenSession) route_C_OpenSession;
__typeof__(C_CloseSession) route_C_CloseSession;
__typeof__(C_CloseAllSessions) route_C_CloseAllSessions;
__typeof__(C_GetSessionInfo) route_C_GetSessionInfo;
__typeof__(C_GetOperationState) route_C_GetOperationState;
__typeof__(C_SetOperationState) route_C_SetOperationState;
__typeof__(C_Login) route_C_Login;
__typeof__(C_Logout) route_C_Logout;
__typeof__(C_InitToken) route_C_InitToken;
__typeof__(C_InitPIN) route_C_InitPIN;
__typeof__(C_SetPIN) route_C_SetPIN;
__typeof__(C_CreateObject) route_C_CreateObject;
__typeof__(C_CopyObject) route_C_CopyObject;
__typeof__(C_DestroyObject) route_C_DestroyObject;
__typeof__(C_GetObjectSize) route_C_GetObjectSize;
__typeof__(C_GetAttributeValue) route_C_GetAttributeValue;
__typeof__(C_SetAttributeValue) route_C_SetAttributeValue;
__typeof__(C_FindObjectsInit) route_C_FindObjectsInit;
__typeof__(C_FindObjects) route_C_FindObjects;
__typeof__(C_FindObjectsFinal) route_C_FindObjectsFinal;
__typeof__(C_EncryptInit) route_C_EncryptInit;
__typeof__(C_Encrypt) route_C_Encrypt;
__typeof__(C_EncryptUpdate) route_C_EncryptUpdate;
__typeof__(C_EncryptFinal) route_C_EncryptFinal;
__typeof__(C_DecryptInit) route_C_DecryptInit;
__typeof__(C_Decrypt) route_C_Decrypt;
__typeof__(C_DecryptUpdate) route_C_DecryptUpdate;
__typeof__(C_DecryptFinal) route_C_DecryptFinal;
__typeof__(C_DigestInit) route_C_DigestInit;
__typeof__(C_Digest) route_C_Digest;
__typeof__(C_DigestUpdate) route_C_DigestUpdate;
__typeof__(C_DigestKey) route_C_DigestKey;
__typeof__(C_DigestFinal) route_C_DigestFinal;
__typeof__(C_SignInit) route_C_SignInit;
__typeof__(C_Sign) route_C_Sign;
__typeof__(C_SignUpdate) route_C_SignUpdate;
__typeof__(C_SignFinal) route_C_SignFinal;
__typeof__(C_SignRecoverInit) route_C_SignRecoverInit;
__typeof__(C_SignRecover) route_C_SignRecover;
__typeof__(C_VerifyInit) route_C_VerifyInit;
__typeof__(C_Verify) route_C_Verify;
__typeof__(C_VerifyUpdate) route_C_VerifyUpdate;
__typeof__(C_VerifyFinal) route_C_VerifyFinal;
__typeof__(C_VerifyRecoverInit) route_C_VerifyRecoverInit;
__typeof__(C_VerifyRecover) route_C_VerifyRecover;
__typeof__(C_DigestEncryptUpdate) route_C_DigestEncryptUpdate;
__typeof__(C_DecryptDigestUpdate) route_C_DecryptDigestUpdate;
__typeof__(C_SignEncryptUpdate) route_C_SignEncryptUpdate;
__typeof__(C_DecryptVerifyUpdate) route_C_DecryptVerifyUpdate;
__typeof__(C_GenerateKey) route_C_GenerateKey;
__typeof__(C_GenerateKeyPair) route_C_GenerateKeyPair;
__typeof__(C_WrapKey) route_C_WrapKey;
__typeof__(C_UnwrapKey) route_C_UnwrapKey;
__typeof__(C_DeriveKey) route_C_DeriveKey;
__typeof__(C_SeedRandom) route_C_SeedRandom;
__typeof__(C_GenerateRandom) route_C_GenerateRandom;
__typeof__(C_GetFunctionStatus) route_C_GetFunctionStatus;
__typeof__(C_CancelFunction) route_C_CancelFunction;

#define ROUTE_SESSION_FUNCTIONS \
    .C_OpenSession = route_C_OpenSession, \
    .C_CloseSession = route_C_CloseSession, \
    .C_CloseAllSessions = route_C_CloseAllSessions, \
    .C_GetSessionInfo = route_C_GetSessionInfo, \
    .C_GetOperationState = route_C_GetOperationState, \
    .C_SetOperationState = route_C_SetOperationState, \
    .C_Login = route_C_Login, \
    .C_Logout = route_C_Logout, \
    .C_InitToken = route_C_InitToken, \
    .C_InitPIN = route_C_InitPIN, \
    .C_SetPIN = route_C_SetPIN, \
    .C_CreateObject = route_C_CreateObject, \
    .C_CopyObject = route_C_CopyObject, \
    .C_DestroyObject = route_C_DestroyObject, \
    .C_GetObjectSize = route_C_GetObjectSize, \
    .C_GetAttributeValue = route_C_GetAttributeValue, \
    .C_SetAttributeValue = route_C_SetAttributeValue, \
    .C_FindObjectsInit = route_C_FindObjectsInit, \
    .C_FindObjects = route_C_FindObjects, \
    .C_FindObjectsFinal = route_C_FindObjectsFinal, \
    .C_EncryptInit = route_C_EncryptInit, \
    .C_Encrypt = route_C_Encrypt, \
    .C_EncryptUpdate = route_C_EncryptUpdate, \
    .C_EncryptFinal = route_C_EncryptFinal, \
    .C_DecryptInit = route_C_DecryptInit, \
    .C_Decrypt = route_C_Decrypt, \
    .C_DecryptUpdate = route_C_DecryptUpdate, \
    .C_DecryptFinal = route_C_DecryptFinal, \
    .C_DigestInit = route_C_DigestInit, \
    .C_Digest = route_C_Digest, \
    .C_DigestUpdate = route_C_DigestUpdate, \
    .C_DigestKey = route_C_DigestKey, \
    .C_DigestFinal = route_C_DigestFinal, \
    .C_SignInit = route_C_SignInit, \
    .C_Sign = route_C_Sign, \
    .C_SignUpdate = route_C_SignUpdate, \
    .C_SignFinal = route_C_SignFinal, \
    .C_SignRecoverInit = route_C_SignRecoverInit, \
    .C_SignRecover = route_C_SignRecover, \
    .C_VerifyInit = route_C_VerifyInit, \
    .C_Verify = route_C_Verify, \
    .C_VerifyUpdate = route_C_VerifyUpdate, \
    .C_VerifyFinal = route_C_VerifyFinal, \
    .C_VerifyRecoverInit = route_C_VerifyRecoverInit, \
    .C_VerifyRecover = route_C_VerifyRecover, \
    .C_DigestEncryptUpdate = route_C_DigestEncryptUpdate, \
    .C_DecryptDigestUpdate = route_C_DecryptDigestUpdate, \
    .C_SignEncryptUpdate = route_C_SignEncryptUpdate, \
    .C_DecryptVerifyUpdate = route_C_DecryptVerifyUpdate, \
    .C_GenerateKey = route_C_GenerateKey, \
    .C_GenerateKeyPair = route_C_GenerateKeyPair, \
    .C_WrapKey = route_C_WrapKey, \
    .C_UnwrapKey = route_C_UnwrapKey, \
    .C_DeriveKey = route_C_DeriveKey, \
    .C_SeedRandom = route_C_SeedRandom, \
    .C_GenerateRandom = route_C_GenerateRandom, \
    .C_GetFunctionStatus = route_C_GetFunctionStatus, \
    .C_CancelFunction = route_C_CancelFunction,

#endif
