// Unit checks of the identifier rules against values computed with syncguard's own reference
// implementation (common/crypto.ts, run once by hand; the values are recorded here, the code is
// not), so keys, storage keys and hashes agree byte for byte with syncguard's backends.
import { strict as assert } from "node:assert";
import { describe, it } from "node:test";
import { decimalArg, fitKey } from "@tollgate/connection";
import { formatFence, hashKey } from "@tollgate/syncguard";

describe("syncguard identifier rules", () => {
  it("hashKey matches syncguard's hashKey", () => {
    assert.equal(hashKey("resource:123"), "e90a28c676a29a3291e2874a");
    assert.equal(hashKey("nxwqfgtdTD6KbxstPE5fYA"), "2901aa5f30b86b5d8300f0d9");
    assert.equal(hashKey("AAAAAAAAAAAAAAAAAAAAAA"), "761621603f31b080201c6800");
    assert.equal(hashKey("é"), "000000e9000002bb0000065f");
    assert.equal(hashKey("cafe\u0301"), hashKey("café"));
    assert.equal(hashKey("😀x"), "03469f75a0f1f91f3cb52af3");
    assert.equal(hashKey(""), "000000000000000000000000");
  });

  it("storage keys match syncguard's makeStorageKey (512-byte limit, no reserve)", () => {
    const long = "€".repeat(170) + "ab";
    assert.equal(fitKey("app", "res:1", 512), "app:res:1");
    assert.equal(fitKey("app", long, 512), "app:CPH6GIIscNPDkk4Vr67RgQ");
    assert.equal(fitKey("", long + "€", 512), "o9sKjCxTsDEuMCRH00vU8Q");
    assert.equal(fitKey("syncguard:", "x".repeat(600), 512), "syncguard:4C-wvwZniOm8-sTYpouvPg");
    assert.throws(() => fitKey("p".repeat(600), "x", 512), /prefix is too long/);
  });

  it("fences are 15 zero-padded digits", () => {
    assert.equal(formatFence(17), "000000000000017");
    assert.ok(formatFence(10) > formatFence(9));
    assert.throws(() => formatFence(1e15), /15 digits/);
    assert.throws(() => formatFence(-1));
  });

  it("decimals go to tollgate as plain decimals with at most 9 places", () => {
    assert.equal(decimalArg("rate", 0.5, 10), "0.5");
    assert.equal(decimalArg("rate", 1e9, 1e9), "1000000000");
    assert.equal(decimalArg("rate", 0.000000001, 1), "0.000000001");
    assert.throws(() => decimalArg("rate", 1e-10, 1), /rate must have at most 9 decimal places/);
    assert.throws(() => decimalArg("rate", 0, 1), /rate must be a positive number at most 1/);
    assert.throws(() => decimalArg("rate", Infinity, 1), /rate must be a positive number/);
  });
});
