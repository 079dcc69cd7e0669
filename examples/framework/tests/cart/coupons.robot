*** Settings ***
Documentation    Coupon codes in the cart.
Resource    resources/common.resource
Resource    resources/cart.resource
Suite Setup    Open Shop Session
Suite Teardown    Close Shop Session


*** Test Cases ***
SHOP-117 Valid Coupon Reduces Cart Total
    [Documentation]    WELCOME10 takes 10 percent off the cart subtotal.
    [Tags]    SHOP-117    cart    smoke
    Login As    alice
    Empty Cart
    Add Product To Cart    BK-1001    2
    Apply Coupon    WELCOME10
    Cart Discount Should Be    6.50
    Cart Total Should Be    58.50

SHOP-118 Expired Coupon Is Rejected
    [Documentation]    An expired coupon is refused and the total does not change.
    [Tags]    SHOP-118    cart    regression
    Login As    alice
    Empty Cart
    Add Product To Cart    HM-3001
    Apply Coupon Should Fail With Message    WINTER20    Coupon has expired
    Cart Total Should Be    18.75

SHOP-119 Unknown Coupon Is Rejected
    [Documentation]    Unknown coupon codes are answered with 404.
    [Tags]    SHOP-119    cart    regression
    Login As    bob
    Apply Coupon Should Fail With Message    FREESTUFF    Coupon not found    expected_status=404
